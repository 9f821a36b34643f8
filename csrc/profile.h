/* Op profiler: wall time and call count per op, switched on around a piece
 * of code (md.profile). The binding times every core function it exposes,
 * the autograd sweep times every backward function, and the binding books
 * Lua's collector apart, as "(lua gc)". A timed call that contains other
 * timed calls (backward contains the sweep's functions) is booked only its
 * own time, so the rows add up to the wall time. Names must be static
 * strings. Not thread-safe: ops are called from one thread. */
#ifndef MD_PROFILE_H
#define MD_PROFILE_H

#include <stdbool.h>
#include <stdint.h>

bool md_profile_enabled(void);
void md_profile_enable(bool on); /* switching on clears the table */
double md_profile_now(void);     /* seconds, monotonic */
/* Books `seconds` to the row (name, backward). */
void md_profile_add(const char *name, bool backward, double seconds);
/* Everything booked so far, in seconds: a timed call subtracts what was
 * booked while it ran. */
double md_profile_booked(void);

typedef struct {
  const char *name;
  bool backward;
  double seconds;
  int64_t calls;
} md_profile_row;

/* The rows recorded so far; *n is set to their count. */
const md_profile_row *md_profile_rows(int *n);

#endif
