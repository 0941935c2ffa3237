/* Fixture trees standing in for /proc and /sys in unit tests of code that
 * takes a root prefix (tools/bam/memory.c, tools/bam/cpu.c). */
#ifndef OCOLOS_TESTS_FIXTURE_TREE_H
#define OCOLOS_TESTS_FIXTURE_TREE_H

/* A new empty directory /tmp/<prefix>.XXXXXX in root (cap bytes); the
 * previous one there, if any (root non-empty), is removed first. */
void fixture_fresh(char *root, unsigned cap, const char *prefix);

/* The file root/rel, with its directories, holding the formatted text. */
void fixture_put(const char *root, const char *rel, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Remove the tree (root left empty). */
void fixture_remove(char *root);

#endif
