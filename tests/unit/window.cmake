# The sampling window (lib/sample/window.c): its convergence distance
# (unit.window), and windows of real rounds on a process of its own
# (window.PIE: stop reasons, cost estimate, rate limit, option checks).
ocolos_unit_test(window test_window_unit TIMEOUT 60)
ocolos_round_test(window test_window.c PIE)
set_tests_properties(window.PIE PROPERTIES SKIP_RETURN_CODE 77)
