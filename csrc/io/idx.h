/* IDX files (MNIST's format): a 4-byte magic (0, 0, type, ndim), ndim
 * big-endian 32-bit sizes, then the data; gzipped or plain (zlib reads
 * both). Only unsigned bytes (type 0x08) are read: images (idx3) and
 * labels (idx1). */
#ifndef MD_IDX_H
#define MD_IDX_H

#include "../tensor.h"

/* The bytes as floats 0..255, in the file's shape (1 to 4 dimensions).
 * A bad magic, an implausible size or missing data is an error
 * ("truncated: expected 47040000 bytes of images, got 1234"). */
int md_idx_read(md_tensor **out, const char *path);

#endif
