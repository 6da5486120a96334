// oneDNN convolutions as XLA:CPU FFI handlers (forward, input gradient, filter
// gradient) for NHWC activations and HWIO kernels, float32.
//
// Why: XLA:CPU's convolution kernels (YNNPACK, Eigen) are 1.3x-2x slower than oneDNN's
// on AVX-512 CPUs for the convolutions of a ResNet or the MIT standard CNN, above all
// their gradients (docs/performance.md). oneDNN is what PyTorch runs on the CPU, so
// binding it here puts both frameworks on the same kernels.
//
// Layout: activations stay NHWC (oneDNN's brgemm convolutions read and write it
// directly), kernels are reordered between HWIO and whatever blocked layout the chosen
// implementation prefers ("any"), which costs one small copy per call. Primitives are
// built once per shape and cached, and calls run one at a time on shared scratch buffers
// (onednn_common.h).
//
// Built by facebias_jax/ops/onednn.py with g++ against the oneDNN wheel
// (onednn-cpu-gomp) and jaxlib's FFI headers.

#include <cstdint>
#include <new>
#include <string>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"
#include "onednn_common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using facebias::Engine;
using facebias::Nhwc;
using facebias::UserScratchpad;
using tag = dnnl::memory::format_tag;

enum class Pass { kForward = 0, kInputGrad = 1, kFilterGrad = 2 };

// Shapes of one convolution, in oneDNN's order: src [N, C, H, W], weights
// [O, I, KH, KW], dst [N, O, OH, OW].
struct Geometry {
  memory::dims src, weights, dst, strides, pad_l, pad_r;
  // Dense kernels only (oneDNN counts dilation from 0): conv.py sends no other.
  memory::dims dilates = {0, 0};
  auto key(Pass pass) const {
    return std::make_tuple(static_cast<int>(pass), src, weights, dst, strides, pad_l,
                           pad_r);
  }
};

// One cached pass: the convolution primitive, the reorder that brings the HWIO kernel
// to (forward, input grad) or from (filter grad) its preferred layout, and the sizes
// of the buffers a call needs.
struct Plan {
  dnnl::primitive conv;
  dnnl::reorder reorder;
  bool needs_reorder = false;
  memory::desc user_weights, conv_weights, scratchpad;
};

// "any": the implementation picks the kernel layout it runs fastest with.
memory::desc AnyLayout(const memory::dims& dims) {
  return memory::desc(dims, memory::data_type::f32, tag::any);
}

// A backward pass (data or weights: both take the same arguments), hinted by the
// forward descriptor so oneDNN picks a matching implementation.
template <typename Desc>
Desc BackwardDesc(const Geometry& g, const dnnl::convolution_forward::primitive_desc& fwd) {
  return Desc(Engine(), dnnl::algorithm::convolution_direct, Nhwc(g.src),
              AnyLayout(g.weights), Nhwc(g.dst), g.strides, g.dilates, g.pad_l, g.pad_r,
              fwd, UserScratchpad());
}

Plan MakePlan(const Geometry& g, Pass pass) {
  Plan plan;
  plan.user_weights = memory::desc(g.weights, memory::data_type::f32, tag::hwio);
  dnnl::convolution_forward::primitive_desc fwd(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      Nhwc(g.src), AnyLayout(g.weights), Nhwc(g.dst), g.strides, g.dilates, g.pad_l,
      g.pad_r, UserScratchpad());
  if (pass == Pass::kForward) {
    plan.conv = dnnl::convolution_forward(fwd);
    plan.conv_weights = fwd.weights_desc();
    plan.scratchpad = fwd.scratchpad_desc();
  } else if (pass == Pass::kInputGrad) {
    auto pd = BackwardDesc<dnnl::convolution_backward_data::primitive_desc>(g, fwd);
    plan.conv = dnnl::convolution_backward_data(pd);
    plan.conv_weights = pd.weights_desc();
    plan.scratchpad = pd.scratchpad_desc();
  } else {
    auto pd = BackwardDesc<dnnl::convolution_backward_weights::primitive_desc>(g, fwd);
    plan.conv = dnnl::convolution_backward_weights(pd);
    plan.conv_weights = pd.diff_weights_desc();
    plan.scratchpad = pd.scratchpad_desc();
  }
  plan.needs_reorder = plan.conv_weights != plan.user_weights;
  if (plan.needs_reorder) {
    plan.reorder = pass == Pass::kFilterGrad
                       ? dnnl::reorder(dnnl::reorder::primitive_desc(
                             Engine(), plan.conv_weights, Engine(), plan.user_weights))
                       : dnnl::reorder(dnnl::reorder::primitive_desc(
                             Engine(), plan.user_weights, Engine(), plan.conv_weights));
  }
  return plan;
}

const Plan& GetPlan(const Geometry& g, Pass pass) {
  return facebias::Cached<Plan>(g.key(pass), [&] { return MakePlan(g, pass); });
}

// XLA passes NHWC / HWIO buffers; the attributes carry what the shapes cannot say.
Geometry MakeGeometry(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w,
                      ffi::Span<const int64_t> y, ffi::Span<const int64_t> strides,
                      ffi::Span<const int64_t> padding) {
  Geometry g;
  g.src = {x[0], x[3], x[1], x[2]};
  g.weights = {w[3], w[2], w[0], w[1]};
  g.dst = {y[0], y[3], y[1], y[2]};
  g.strides = {strides[0], strides[1]};
  g.pad_l = {padding[0], padding[2]};
  g.pad_r = {padding[1], padding[3]};
  return g;
}

ffi::Error Run(const Geometry& g, Pass pass, void* act, void* weights, void* out) {
  static facebias::Arena staged_arena;  // The reordered kernel.
  facebias::Arena& scratch_arena = facebias::ScratchArena();
  std::lock_guard<std::mutex> lock(facebias::CallLock());
  facebias::PinnedThreads threads;
  try {
    const Plan& plan = GetPlan(g, pass);
    auto& engine = Engine();
    dnnl::stream stream(engine);
    uint8_t* scratch = scratch_arena.Get(plan.scratchpad.get_size());
    uint8_t* staged = plan.needs_reorder ? staged_arena.Get(plan.conv_weights.get_size())
                                         : nullptr;
    memory user_w(plan.user_weights, engine, weights);
    memory conv_w(plan.conv_weights, engine, plan.needs_reorder ? staged : weights);
    memory scratchpad(plan.scratchpad, engine, scratch);
    memory::desc act_md = Nhwc(pass == Pass::kInputGrad ? g.dst : g.src);
    memory::desc out_md = Nhwc(pass == Pass::kForward ? g.dst : g.src);
    if (pass == Pass::kForward) {
      if (plan.needs_reorder) plan.reorder.execute(stream, user_w, conv_w);
      plan.conv.execute(stream, {{DNNL_ARG_SRC, memory(act_md, engine, act)},
                                 {DNNL_ARG_WEIGHTS, conv_w},
                                 {DNNL_ARG_DST, memory(out_md, engine, out)},
                                 {DNNL_ARG_SCRATCHPAD, scratchpad}});
    } else if (pass == Pass::kInputGrad) {
      if (plan.needs_reorder) plan.reorder.execute(stream, user_w, conv_w);
      plan.conv.execute(stream, {{DNNL_ARG_DIFF_DST, memory(act_md, engine, act)},
                                 {DNNL_ARG_WEIGHTS, conv_w},
                                 {DNNL_ARG_DIFF_SRC, memory(out_md, engine, out)},
                                 {DNNL_ARG_SCRATCHPAD, scratchpad}});
    } else {
      // act = x, weights = dy (NHWC, described by g.dst), out = dw (HWIO).
      memory::desc dy_md = Nhwc(g.dst);
      memory user_dw(plan.user_weights, engine, out);
      memory conv_dw(plan.conv_weights, engine, plan.needs_reorder ? staged : out);
      plan.conv.execute(stream, {{DNNL_ARG_SRC, memory(act_md, engine, act)},
                                 {DNNL_ARG_DIFF_DST, memory(dy_md, engine, weights)},
                                 {DNNL_ARG_DIFF_WEIGHTS, conv_dw},
                                 {DNNL_ARG_SCRATCHPAD, scratchpad}});
      if (plan.needs_reorder) plan.reorder.execute(stream, conv_dw, user_dw);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal,
                      std::string("oneDNN convolution failed: ") + e.what());
  } catch (const std::bad_alloc&) {
    return ffi::Error(ffi::ErrorCode::kResourceExhausted,
                      "oneDNN convolution: out of memory for its scratch buffers");
  }
  return ffi::Error::Success();
}

using F32 = ffi::Buffer<ffi::F32>;
using Ints = ffi::Span<const int64_t>;

ffi::Error Forward(F32 x, F32 w, ffi::ResultBuffer<ffi::F32> y, Ints strides,
                   Ints padding) {
  auto g = MakeGeometry(x.dimensions(), w.dimensions(), y->dimensions(), strides,
                        padding);
  return Run(g, Pass::kForward, x.untyped_data(), w.untyped_data(), y->untyped_data());
}

ffi::Error InputGrad(F32 dy, F32 w, ffi::ResultBuffer<ffi::F32> dx, Ints strides,
                     Ints padding) {
  auto g = MakeGeometry(dx->dimensions(), w.dimensions(), dy.dimensions(), strides,
                        padding);
  return Run(g, Pass::kInputGrad, dy.untyped_data(), w.untyped_data(),
             dx->untyped_data());
}

ffi::Error FilterGrad(F32 x, F32 dy, ffi::ResultBuffer<ffi::F32> dw, Ints strides,
                      Ints padding) {
  auto g = MakeGeometry(x.dimensions(), dw->dimensions(), dy.dimensions(), strides,
                        padding);
  return Run(g, Pass::kFilterGrad, x.untyped_data(), dy.untyped_data(),
             dw->untyped_data());
}

}  // namespace

#define FACEBIAS_BIND                                                        \
  ffi::Ffi::Bind()                                                           \
      .Arg<F32>()                                                            \
      .Arg<F32>()                                                            \
      .Ret<F32>()                                                            \
      .Attr<Ints>("strides")                                                 \
      .Attr<Ints>("padding")

XLA_FFI_DEFINE_HANDLER_SYMBOL(FacebiasOnednnConvForward, Forward, FACEBIAS_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(FacebiasOnednnConvInputGrad, InputGrad, FACEBIAS_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(FacebiasOnednnConvFilterGrad, FilterGrad, FACEBIAS_BIND);
