// oneDNN BatchNorm (training mode, optionally fused with the ReLU after it) and
// max-pooling as XLA:CPU FFI handlers, forward and backward, for NHWC float32.
//
// Why: once the convolutions run on oneDNN (onednn_conv.cc), what is left of a ResNet
// train step is mostly memory-bound work between them, and XLA:CPU's BatchNorm
// (statistics, normalisation, their gradients: four or five passes over the
// activations) and its max-pool gradient take 2-3x the time of oneDNN's, which reads
// each tensor once or twice (figures in docs/performance.md).
//
// BatchNorm: forward_training computes the batch mean and biased variance (what flax's
// BatchNorm normalises with and averages into its running statistics) and
// y = relu?((x - mean) / sqrt(var + eps) * scale + shift). With the ReLU fused, the
// forward pass leaves a workspace (which outputs were clipped) that the backward pass
// reads. The backward pass gives dx, dscale and dshift from x, the statistics and dy.
//
// Max-pool: forward_training leaves a workspace with the index of each window's
// maximum (the first in row-major order, as XLA's select-and-scatter picks); the
// backward pass scatters dy there. Padding never wins (oneDNN pads with -inf).
//
// Workspace sizes are asked for through the two extern "C" functions at the end, so the
// Python side can allocate them as XLA buffers that travel from forward to backward.

#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <new>
#include <string>
#include <tuple>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "onednn_common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using facebias::Engine;
using facebias::Nhwc;

using F32 = ffi::Buffer<ffi::F32>;
using U8 = ffi::Buffer<ffi::U8>;
using Ints = ffi::Span<const int64_t>;
using Args = std::unordered_map<int, memory>;

// One primitive call: what to run, the scratchpad it needs and its arguments.
struct Call {
  const dnnl::primitive* primitive;
  memory::desc scratchpad;
  Args args;
};

// Under the shared lock: looks the plan up (building it on first use; oneDNN may refuse
// the shape), makes the call from it, adds the scratchpad and runs it. oneDNN's
// exceptions become FFI errors that name the operation.
template <typename Get, typename Make>
ffi::Error Execute(const char* what, Get get_plan, Make make_call) {
  std::lock_guard<std::mutex> lock(facebias::CallLock());
  facebias::PinnedThreads threads;
  try {
    Call call = make_call(get_plan());
    call.args[DNNL_ARG_SCRATCHPAD] = memory(
        call.scratchpad, Engine(), facebias::ScratchArena().Get(call.scratchpad.get_size()));
    dnnl::stream stream(Engine());
    call.primitive->execute(stream, call.args);
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN ") + what +
                                                     " failed: " + e.what());
  } catch (const std::bad_alloc&) {
    return ffi::Error(ffi::ErrorCode::kResourceExhausted,
                      std::string("oneDNN ") + what + ": out of memory for its scratchpad");
  }
  return ffi::Error::Success();
}

// ---- BatchNorm ----------------------------------------------------------------------

struct NormPlan {
  dnnl::batch_normalization_forward::primitive_desc fwd_pd;
  dnnl::batch_normalization_backward::primitive_desc bwd_pd;
  dnnl::batch_normalization_forward fwd;
  dnnl::batch_normalization_backward bwd;
  memory::desc data, stat;
};

const NormPlan& GetNorm(int64_t n, int64_t h, int64_t w, int64_t c, float eps,
                        bool relu) {
  return facebias::Cached<NormPlan>(std::make_tuple(n, h, w, c, eps, relu), [&] {
    using flags = dnnl::normalization_flags;
    auto f = flags::use_scale | flags::use_shift;
    if (relu) f = f | flags::fuse_norm_relu;
    NormPlan p;
    p.data = Nhwc({n, c, h, w});
    p.stat = memory::desc({c}, memory::data_type::f32, memory::format_tag::a);
    p.fwd_pd = dnnl::batch_normalization_forward::primitive_desc(
        Engine(), dnnl::prop_kind::forward_training, p.data, p.data, eps, f,
        facebias::UserScratchpad());
    p.bwd_pd = dnnl::batch_normalization_backward::primitive_desc(
        Engine(), dnnl::prop_kind::backward, p.data, p.data, p.data, eps, f, p.fwd_pd,
        facebias::UserScratchpad());
    p.fwd = dnnl::batch_normalization_forward(p.fwd_pd);
    p.bwd = dnnl::batch_normalization_backward(p.bwd_pd);
    return p;
  });
}

// The arguments both passes read: x, scale, the statistics and (with the ReLU) the
// workspace.
Args NormInputs(const NormPlan& p, void* x, void* scale, void* mean, void* var,
                void* workspace, bool relu) {
  auto& e = Engine();
  Args args = {{DNNL_ARG_SRC, memory(p.data, e, x)},
               {DNNL_ARG_SCALE, memory(p.stat, e, scale)},
               {DNNL_ARG_MEAN, memory(p.stat, e, mean)},
               {DNNL_ARG_VARIANCE, memory(p.stat, e, var)}};
  if (relu) args[DNNL_ARG_WORKSPACE] = memory(p.fwd_pd.workspace_desc(), e, workspace);
  return args;
}

// NHWC input and one value per channel in each per-channel buffer, else an error
// (batch_norm_relu is public: nothing else stands between a wrong shape and the reads).
ffi::Error CheckNormShapes(const F32& x, std::initializer_list<const F32*> per_channel) {
  if (x.dimensions().size() != 4) {
    return ffi::Error::InvalidArgument("oneDNN BatchNorm: input must be NHWC (rank 4)");
  }
  for (const F32* buffer : per_channel) {
    if (buffer->element_count() != static_cast<size_t>(x.dimensions()[3])) {
      return ffi::Error::InvalidArgument(
          "oneDNN BatchNorm: scale, shift, mean and variance need one value per channel");
    }
  }
  return ffi::Error::Success();
}

ffi::Error NormForward(F32 x, F32 scale, F32 shift, ffi::ResultBuffer<ffi::F32> y,
                       ffi::ResultBuffer<ffi::F32> mean, ffi::ResultBuffer<ffi::F32> var,
                       ffi::ResultBuffer<ffi::U8> workspace, float epsilon, bool relu) {
  if (auto error = CheckNormShapes(x, {&scale, &shift}); error.failure()) return error;
  auto d = x.dimensions();
  return Execute(
      "BatchNorm forward",
      [&]() -> const NormPlan& { return GetNorm(d[0], d[1], d[2], d[3], epsilon, relu); },
      [&](const NormPlan& p) {
        // Mean and variance are outputs here: forward_training computes them.
        Args args = NormInputs(p, x.untyped_data(), scale.untyped_data(),
                               mean->untyped_data(), var->untyped_data(),
                               workspace->untyped_data(), relu);
        args[DNNL_ARG_SHIFT] = memory(p.stat, Engine(), shift.untyped_data());
        args[DNNL_ARG_DST] = memory(p.data, Engine(), y->untyped_data());
        return Call{&p.fwd, p.fwd_pd.scratchpad_desc(), std::move(args)};
      });
}

ffi::Error NormBackward(F32 x, F32 scale, F32 mean, F32 var, F32 dy, U8 workspace,
                        ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dscale,
                        ffi::ResultBuffer<ffi::F32> dshift, float epsilon, bool relu) {
  if (auto error = CheckNormShapes(x, {&scale, &mean, &var}); error.failure()) return error;
  if (dy.element_count() != x.element_count()) {
    return ffi::Error::InvalidArgument("oneDNN BatchNorm backward: dy and x differ in size");
  }
  auto d = x.dimensions();
  return Execute(
      "BatchNorm backward",
      [&]() -> const NormPlan& { return GetNorm(d[0], d[1], d[2], d[3], epsilon, relu); },
      [&](const NormPlan& p) {
        Args args = NormInputs(p, x.untyped_data(), scale.untyped_data(),
                               mean.untyped_data(), var.untyped_data(),
                               workspace.untyped_data(), relu);
        auto& e = Engine();
        args[DNNL_ARG_DIFF_DST] = memory(p.data, e, dy.untyped_data());
        args[DNNL_ARG_DIFF_SRC] = memory(p.data, e, dx->untyped_data());
        args[DNNL_ARG_DIFF_SCALE] = memory(p.stat, e, dscale->untyped_data());
        args[DNNL_ARG_DIFF_SHIFT] = memory(p.stat, e, dshift->untyped_data());
        return Call{&p.bwd, p.bwd_pd.scratchpad_desc(), std::move(args)};
      });
}

// ---- Max-pool -----------------------------------------------------------------------

// [N, C, H, W] of the input, then the window, strides and padding (top, bottom, left,
// right); the output size follows from them.
struct PoolGeometry {
  memory::dims src, kernel, strides, pad_l, pad_r;
  memory::dims dst() const {
    memory::dims out = {src[0], src[1], 0, 0};
    for (int i = 0; i < 2; ++i) {
      out[2 + i] = (src[2 + i] + pad_l[i] + pad_r[i] - kernel[i]) / strides[i] + 1;
    }
    return out;
  }
  auto key() const { return std::make_tuple(src, kernel, strides, pad_l, pad_r); }
};

struct PoolPlan {
  dnnl::pooling_forward::primitive_desc fwd_pd;
  dnnl::pooling_backward::primitive_desc bwd_pd;
  dnnl::pooling_forward fwd;
  dnnl::pooling_backward bwd;
};

const PoolPlan& GetPool(const PoolGeometry& g) {
  return facebias::Cached<PoolPlan>(g.key(), [&] {
    PoolPlan p;
    memory::dims dilation = {0, 0};
    p.fwd_pd = dnnl::pooling_forward::primitive_desc(
        Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::pooling_max,
        Nhwc(g.src), Nhwc(g.dst()), g.strides, g.kernel, dilation, g.pad_l, g.pad_r,
        facebias::UserScratchpad());
    p.bwd_pd = dnnl::pooling_backward::primitive_desc(
        Engine(), dnnl::algorithm::pooling_max, Nhwc(g.src), Nhwc(g.dst()), g.strides,
        g.kernel, dilation, g.pad_l, g.pad_r, p.fwd_pd, facebias::UserScratchpad());
    p.fwd = dnnl::pooling_forward(p.fwd_pd);
    p.bwd = dnnl::pooling_backward(p.bwd_pd);
    return p;
  });
}

PoolGeometry MakePool(ffi::Span<const int64_t> x, Ints window, Ints strides,
                      Ints padding) {
  PoolGeometry g;
  g.src = {x[0], x[3], x[1], x[2]};
  g.kernel = {window[0], window[1]};
  g.strides = {strides[0], strides[1]};
  g.pad_l = {padding[0], padding[2]};
  g.pad_r = {padding[1], padding[3]};
  return g;
}

ffi::Error PoolForward(F32 x, ffi::ResultBuffer<ffi::F32> y,
                       ffi::ResultBuffer<ffi::U8> workspace, Ints window, Ints strides,
                       Ints padding) {
  PoolGeometry g = MakePool(x.dimensions(), window, strides, padding);
  return Execute("max-pool forward", [&]() -> const PoolPlan& { return GetPool(g); },
                 [&](const PoolPlan& p) {
                   auto& e = Engine();
                   Args args = {
                       {DNNL_ARG_SRC, memory(Nhwc(g.src), e, x.untyped_data())},
                       {DNNL_ARG_DST, memory(Nhwc(g.dst()), e, y->untyped_data())},
                       {DNNL_ARG_WORKSPACE, memory(p.fwd_pd.workspace_desc(), e,
                                                   workspace->untyped_data())}};
                   return Call{&p.fwd, p.fwd_pd.scratchpad_desc(), std::move(args)};
                 });
}

// oneDNN zeroes dx before scattering dy to each window's argmax (checked: a dx buffer
// filled with NaN comes back finite), so XLA's uninitialised output buffer is safe.
ffi::Error PoolBackward(F32 dy, U8 workspace, ffi::ResultBuffer<ffi::F32> dx, Ints window,
                        Ints strides, Ints padding) {
  PoolGeometry g = MakePool(dx->dimensions(), window, strides, padding);
  return Execute("max-pool backward", [&]() -> const PoolPlan& { return GetPool(g); },
                 [&](const PoolPlan& p) {
                   auto& e = Engine();
                   Args args = {
                       {DNNL_ARG_DIFF_DST, memory(Nhwc(g.dst()), e, dy.untyped_data())},
                       {DNNL_ARG_WORKSPACE, memory(p.fwd_pd.workspace_desc(), e,
                                                   workspace.untyped_data())},
                       {DNNL_ARG_DIFF_SRC, memory(Nhwc(g.src), e, dx->untyped_data())}};
                   return Call{&p.bwd, p.bwd_pd.scratchpad_desc(), std::move(args)};
                 });
}

// Workspace bytes, or -1 when oneDNN cannot build the primitive (Python then keeps XLA's
// form under "auto"; under "onednn" the FFI call reports oneDNN's message).
template <typename Get>
int64_t WorkspaceBytes(Get get) {
  try {
    return static_cast<int64_t>(get().fwd_pd.workspace_desc().get_size());
  } catch (...) {  // Nothing may cross the C boundary into ctypes.
    return -1;
  }
}

}  // namespace

extern "C" int64_t FacebiasOnednnNormWorkspaceBytes(int64_t n, int64_t h, int64_t w,
                                                    int64_t c, float epsilon, int relu) {
  return WorkspaceBytes([&]() -> const NormPlan& {
    return GetNorm(n, h, w, c, epsilon, relu != 0);
  });
}

extern "C" int64_t FacebiasOnednnPoolWorkspaceBytes(const int64_t* nhwc,
                                                    const int64_t* window,
                                                    const int64_t* strides,
                                                    const int64_t* padding) {
  PoolGeometry g = MakePool(ffi::Span<const int64_t>(nhwc, 4), Ints(window, 2),
                            Ints(strides, 2), Ints(padding, 4));
  return WorkspaceBytes([&]() -> const PoolPlan& { return GetPool(g); });
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(FacebiasOnednnNormForward, NormForward,
                              ffi::Ffi::Bind()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Ret<U8>()
                                  .Attr<float>("epsilon")
                                  .Attr<bool>("relu"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(FacebiasOnednnNormBackward, NormBackward,
                              ffi::Ffi::Bind()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<U8>()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Attr<float>("epsilon")
                                  .Attr<bool>("relu"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(FacebiasOnednnPoolForward, PoolForward,
                              ffi::Ffi::Bind()
                                  .Arg<F32>()
                                  .Ret<F32>()
                                  .Ret<U8>()
                                  .Attr<Ints>("window")
                                  .Attr<Ints>("strides")
                                  .Attr<Ints>("padding"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(FacebiasOnednnPoolBackward, PoolBackward,
                              ffi::Ffi::Bind()
                                  .Arg<F32>()
                                  .Arg<U8>()
                                  .Ret<F32>()
                                  .Attr<Ints>("window")
                                  .Attr<Ints>("strides")
                                  .Attr<Ints>("padding"));
