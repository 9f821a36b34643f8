#include <stdlib.h>

#include "autograd.h"
#include "testutil.h"

int main(void) {
  md_autograd_poison_fresh(true); /* a gradient element an op leaves unwritten reads NaN */
  SRunner *sr = srunner_create(make_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
