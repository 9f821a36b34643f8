/* Errors: the C core never exits, aborts or prints. A fallible function returns
 * MD_ERR (or NULL) after md_error() has recorded a message; the Lua binding turns
 * that message into a Lua error. */
#ifndef MD_ERROR_H
#define MD_ERROR_H

enum { MD_OK = 0, MD_ERR = -1 };

/* Records a printf-style message and returns MD_ERR, so callers can write
 * `return md_error("conv2d: ...", ...);`. */
int md_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The message of the most recent error on this thread. */
const char *md_errmsg(void);

#endif
