#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char errbuf[512];

int md_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return MD_ERR;
}

const char *md_errmsg(void) { return errbuf[0] ? errbuf : "unknown error"; }
