// SPDX-License-Identifier: GPL-3.0-or-later
// Large buffers on transparent huge pages, where the kernel gives them on
// request (THP "madvise" mode, Debian's default).
//
// A scan of 100,000 packets with a header index touches some 40 MB of
// fresh memory (the index's entries part, the entries parsed from it, the
// next index). Faulting that in 4 KiB at a time cost more than everything
// else `queue-process -n 1` does on such a queue (measured: 0.25 s -> 0.11 s
// with huge pages). Small allocations go to operator new as usual; without
// THP the large ones are plain anonymous mappings, as malloc's would be.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <new>

namespace safespool {

/// Allocations from this size on are mapped and advised as huge pages.
inline constexpr size_t kHugeAllocMin = size_t{1} << 20;

/// `bytes` of zeroed memory from mmap, advised MADV_HUGEPAGE. Throws
/// std::bad_alloc.
inline void* huge_alloc(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: EINVAL without THP
  return p;
}

inline void huge_free(void* p, size_t bytes) noexcept { ::munmap(p, bytes); }

/// std::allocator, except that large blocks come from huge_alloc().
template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n > size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    size_t bytes = n * sizeof(T);
    if (bytes >= kHugeAllocMin) return static_cast<T*>(huge_alloc(bytes));
    return static_cast<T*>(::operator new(bytes, std::align_val_t(alignof(T))));
  }
  void deallocate(T* p, size_t n) noexcept {
    size_t bytes = n * sizeof(T);
    if (bytes >= kHugeAllocMin) return huge_free(p, bytes);
    ::operator delete(p, std::align_val_t(alignof(T)));
  }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

/// An uninitialised byte buffer, from HugePageAllocator.
class HugeBuffer {
 public:
  HugeBuffer() = default;
  explicit HugeBuffer(size_t size) : data_(HugePageAllocator<char>().allocate(size)), size_(size) {}
  HugeBuffer(HugeBuffer&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr; }
  HugeBuffer& operator=(HugeBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = o.data_;
      size_ = o.size_;
      o.data_ = nullptr;
    }
    return *this;
  }
  ~HugeBuffer() { release(); }

  char* get() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release() noexcept {
    if (data_) HugePageAllocator<char>().deallocate(data_, size_);
    data_ = nullptr;
  }
  char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace safespool
