#include "profile.h"

#include <string.h>
#include <time.h>

/* A few hundred distinct ops at most: a linear table keyed by the name's
 * address (names are static strings) is plenty. */
#define MAX_ROWS 512

static md_profile_row rows[MAX_ROWS];
static int nrows;
static bool enabled;
static double booked;

bool md_profile_enabled(void) { return enabled; }

void md_profile_enable(bool on) {
  if (on && !enabled) nrows = 0, booked = 0;
  enabled = on;
}

double md_profile_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double md_profile_booked(void) { return booked; }

void md_profile_add(const char *name, bool backward, double seconds) {
  booked += seconds;
  for (int i = nrows - 1; i >= 0; i--)
    if (rows[i].backward == backward && (rows[i].name == name || strcmp(rows[i].name, name) == 0)) {
      rows[i].seconds += seconds;
      rows[i].calls++;
      return;
    }
  if (nrows == MAX_ROWS) return; /* a full table drops new names rather than fail the op */
  rows[nrows++] = (md_profile_row){name, backward, seconds, 1};
}

const md_profile_row *md_profile_rows(int *n) {
  *n = nrows;
  return rows;
}
