/*
 * The sampling window's convergence distance (lib/sample/window.c,
 * sample_distance_ppm): the total variation distance between the key
 * distribution of the first half of the samples (n/2, rounded down) and of
 * all of them; and the size of the hot set (sample_hot_keys). Expected
 * values derived by hand below.
 */
#include <stdint.h>

#include "check.h"
#include "sample/sample.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

int main(void)
{
	/* {1,1 | 2,2}: half (1: 1.0), all (1: .5, 2: .5); 1/2 (.5 + .5) = .5 */
	static const uint64_t a[] = { 1, 1, 2, 2 };
	expect(sample_distance_ppm(a, N(a)) == 500000, "a: %u", sample_distance_ppm(a, N(a)));
	/* {1,2 | 1,2}: the same distribution: 0 */
	static const uint64_t b[] = { 1, 2, 1, 2 };
	expect(sample_distance_ppm(b, N(b)) == 0, "b: %u", sample_distance_ppm(b, N(b)));
	/* {5,5 | 5,7}: half (5: 1), all (5: .75, 7: .25); 1/2 (.25 + .25) = .25 */
	static const uint64_t c[] = { 5, 5, 5, 7 };
	expect(sample_distance_ppm(c, N(c)) == 250000, "c: %u", sample_distance_ppm(c, N(c)));
	/* {1 | 1,2}: half (1: 1), all (1: 2/3, 2: 1/3); 1/2 (1/3 + 1/3) = 1/3 */
	static const uint64_t d[] = { 1, 1, 2 };
	expect(sample_distance_ppm(d, N(d)) == 333333, "d: %u", sample_distance_ppm(d, N(d)));
	/* Keys unsorted and large (addresses): {9,3,3,9,7,7 | ...}: half
	 * {9,3,3}: (3: 2/3, 9: 1/3); all (3: 2/6, 7: 2/6, 9: 2/6);
	 * 1/2 (1/3 + 0 + 1/3) = 1/3 */
	static const uint64_t e[] = { UINT64_MAX, 3, 3, UINT64_MAX, 1ull << 63, 1ull << 63 };
	expect(sample_distance_ppm(e, N(e)) == 333333, "e: %u", sample_distance_ppm(e, N(e)));
	/* The hot set: keys carrying a share of the samples, most frequent
	 * first. {7 x5, 8 x3, 9 x2}: 90 % of 10 is 9 and 5 + 3 = 8 < 9, so
	 * all three; 50 % (5): key 7 alone; 80 % (8): 7 and 8. */
	static const uint64_t h[] = { 9, 7, 8, 7, 7, 9, 8, 7, 8, 7 };
	expect(sample_hot_keys(h, N(h), 900) == 3, "hot 90 %%: %u", sample_hot_keys(h, N(h), 900));
	expect(sample_hot_keys(h, N(h), 500) == 1, "hot 50 %%: %u", sample_hot_keys(h, N(h), 500));
	expect(sample_hot_keys(h, N(h), 800) == 2, "hot 80 %%: %u", sample_hot_keys(h, N(h), 800));
	expect(sample_hot_keys(h, 0, 900) == 0, "hot of nothing");
	/* Fewer than 2 samples: as far as can be. */
	expect(sample_distance_ppm(a, 1) == 1000000, "one sample");
	expect(sample_distance_ppm(a, 0) == 1000000, "no sample");
	test_done();
}
