/* Second translation unit of the fixture: cross-unit calls keep relocations. */
long fx_leaf(long x);
__attribute__((noinline)) long fx_far(long x) { return fx_leaf(x) - 1; }
