/* LD_PRELOAD shim for unwritten_memory.py (issue 34).
 *
 * Every block that malloc, memalign, aligned_alloc or posix_memalign hands out, from 256 bytes up, is
 * filled with 0xFF bytes first. 0xFFFF is a NaN in bfloat16 and 0xFFFFFFFF one in float32, so a kernel that
 * reads memory it never wrote makes NaN every time, even where it multiplies that memory by zero.
 * Build: cc -O2 -shared -fPIC -o nanfill.so nanfill.c
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_memalign(size_t, size_t);

static void *filled(void *block, size_t bytes) {
  if (block && bytes >= 256) memset(block, 0xFF, bytes);
  return block;
}

void *malloc(size_t bytes) { return filled(__libc_malloc(bytes), bytes); }
void *memalign(size_t alignment, size_t bytes) { return filled(__libc_memalign(alignment, bytes), bytes); }
void *aligned_alloc(size_t alignment, size_t bytes) { return filled(__libc_memalign(alignment, bytes), bytes); }

int posix_memalign(void **out, size_t alignment, size_t bytes) {
  void *block = filled(__libc_memalign(alignment, bytes), bytes);
  if (!block) return ENOMEM;
  *out = block;
  return 0;
}
