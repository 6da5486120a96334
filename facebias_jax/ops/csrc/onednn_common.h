// What the oneDNN FFI handlers share: the engine, the lock that runs one oneDNN call at
// a time, a grow-only scratch buffer and a per-process cache of primitives.
//
// One call at a time: each oneDNN primitive already spreads over every core through
// OpenMP, and XLA would otherwise start independent ones (a layer's two gradients)
// side by side on its own threads, each with a full OpenMP team, oversubscribing the
// cores. Since calls are serialised anyway, one scratchpad (ScratchArena) serves them all.

#ifndef FACEBIAS_ONEDNN_COMMON_H_
#define FACEBIAS_ONEDNN_COMMON_H_

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>

#include <omp.h>

#include "oneapi/dnnl/dnnl.hpp"

namespace facebias {

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Held for the whole of every oneDNN call (convolutions, BatchNorm, pooling).
inline std::mutex& CallLock() {
  static std::mutex running;
  return running;
}

// The OpenMP team size of every oneDNN primitive, built or run: $OMP_NUM_THREADS when
// set, else every core. oneDNN splits reductions (BatchNorm statistics, filter
// gradients) by thread count, fixed when a primitive is built, so results change with
// it, and the team size is global state another library may change: PyTorch, imported
// in the same process, shares this libgomp, and torch.set_num_threads(1) there changed
// our BatchNorm's results (and so a resumed run's weights). PinnedThreads sets it on the
// calling thread for its lifetime and restores the caller's setting afterwards.
class PinnedThreads {
 public:
  PinnedThreads() : previous_(omp_get_max_threads()) {
    if (previous_ != Wanted()) omp_set_num_threads(Wanted());
  }
  ~PinnedThreads() {
    if (previous_ != Wanted()) omp_set_num_threads(previous_);
  }
  PinnedThreads(const PinnedThreads&) = delete;
  PinnedThreads& operator=(const PinnedThreads&) = delete;

 private:
  static int Wanted() {
    static const int threads = [] {
      const char* env = std::getenv("OMP_NUM_THREADS");
      int value = env != nullptr ? std::atoi(env) : 0;
      return value > 0 ? value : omp_get_num_procs();
    }();
    return threads;
  }
  int previous_;
};

inline dnnl::memory::desc Nhwc(const dnnl::memory::dims& nchw) {
  return dnnl::memory::desc(nchw, dnnl::memory::data_type::f32,
                            dnnl::memory::format_tag::nhwc);
}

inline dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// A 64-byte aligned scratch area that only grows; allocating per call would cost page
// faults on every large primitive. Use it under CallLock().
class Arena {
 public:
  ~Arena() { std::free(data_); }
  uint8_t* Get(size_t size) {
    if (size > size_) {
      std::free(data_);
      size_ = (size + 63) / 64 * 64;
      data_ = static_cast<uint8_t*>(std::aligned_alloc(64, size_));
      if (data_ == nullptr) {
        size_ = 0;
        throw std::bad_alloc();
      }
    }
    return data_;
  }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// The scratchpad every primitive call uses (calls are serialised by CallLock()).
inline Arena& ScratchArena() {
  static Arena arena;
  return arena;
}

// Primitive creation takes milliseconds (oneDNN JIT-compiles kernels), so plans are
// built once per key (pass and shape) and kept for the life of the process.
template <typename Plan, typename Key, typename Make>
const Plan& Cached(const Key& key, Make make) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Plan>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[key];
  if (!slot) {
    PinnedThreads threads;  // Some implementations fix their thread split here.
    slot = std::make_unique<Plan>(make());
  }
  return *slot;
}

}  // namespace facebias

#endif  // FACEBIAS_ONEDNN_COMMON_H_
