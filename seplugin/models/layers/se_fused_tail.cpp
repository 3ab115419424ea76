// The fused SE tail's four passes over a block's map (CPU): see se_fused_tail.py for the
// algebra. Each pass reads the map once; per-(n, c) sums accumulate in double. Maps are
// (N, C, H, W), all of one layout: contiguous (planes of H*W) or channels_last (rows of C).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace {

constexpr int64_t kChannelBlock = 64;  // channels_last: channels per task

bool channels_last(const at::Tensor& t) {
  return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

void check_maps(const std::vector<at::Tensor>& maps) {
  const auto& ref = maps[0];
  TORCH_CHECK(ref.dim() == 4 && ref.device().is_cpu(), "fused SE tail: expected 4-d CPU maps");
  TORCH_CHECK(ref.is_contiguous() || ref.is_contiguous(at::MemoryFormat::ChannelsLast),
              "fused SE tail: maps must be contiguous or channels_last");
  for (const auto& t : maps) {
    TORCH_CHECK(t.sizes() == ref.sizes() && t.strides() == ref.strides() &&
                    t.scalar_type() == ref.scalar_type(),
                "fused SE tail: maps of different shape, layout or dtype");
  }
}

int64_t grain(int64_t work_per_task) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_task));
}

// Runs body(n, c0, cw) over (sample, channel block) tasks of a channels_last map.
template <typename F>
void for_channel_blocks(int64_t N, int64_t C, int64_t hw, const F& body) {
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
  at::parallel_for(0, N * blocks, grain(hw * kChannelBlock), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t c0 = (t % blocks) * kChannelBlock;
      body(t / blocks, c0, std::min(kChannelBlock, C - c0));
    }
  });
}

// Per-(n, c) mean and sum of squared deviations of z, shifted by the first value of each
// plane so that a large |mean| / std does not cancel: returns (2, N, C) float64.
template <typename T>
void plane_stats_kernel(const at::Tensor& z, at::Tensor& out) {
  const int64_t N = z.size(0), C = z.size(1), hw = z.size(2) * z.size(3);
  const T* zp = z.data_ptr<T>();
  double* mean = out.data_ptr<double>();
  double* m2 = mean + N * C;
  if (!channels_last(z)) {
    at::parallel_for(0, N * C, grain(hw), [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const T* x = zp + p * hw;
        const double k = x[0];
        double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t i = 0; i < hw; ++i) {
          const double d = double(x[i]) - k;
          s1 += d;
          s2 += d * d;
        }
        mean[p] = k + s1 / hw;
        m2[p] = std::max(0.0, s2 - s1 * s1 / hw);
      }
    });
    return;
  }
  for_channel_blocks(N, C, hw, [&](int64_t n, int64_t c0, int64_t cw) {
    double k[kChannelBlock], s1[kChannelBlock] = {}, s2[kChannelBlock] = {};
    const T* base = zp + n * hw * C + c0;
    for (int64_t c = 0; c < cw; ++c) k[c] = base[c];
    for (int64_t i = 0; i < hw; ++i) {
      const T* row = base + i * C;
#pragma omp simd
      for (int64_t c = 0; c < cw; ++c) {
        const double d = double(row[c]) - k[c];
        s1[c] += d;
        s2[c] += d * d;
      }
    }
    for (int64_t c = 0; c < cw; ++c) {
      mean[n * C + c0 + c] = k[c] + s1[c] / hw;
      m2[n * C + c0 + c] = std::max(0.0, s2[c] - s1[c] * s1[c] / hw);
    }
  });
}

// out = relu((z - mu[c]) * a[n, c] + b[n, c] + identity): BN, the SE scale, the addition
// and the ReLU in one pass.
template <typename T>
void forward_kernel(const at::Tensor& z, const at::Tensor& identity, const at::Tensor& mu,
                    const at::Tensor& a, const at::Tensor& b, at::Tensor& out) {
  const int64_t N = z.size(0), C = z.size(1), hw = z.size(2) * z.size(3);
  const T *zp = z.data_ptr<T>(), *ip = identity.data_ptr<T>(), *mp = mu.data_ptr<T>(),
          *ap = a.data_ptr<T>(), *bp = b.data_ptr<T>();
  T* op = out.data_ptr<T>();
  if (!channels_last(z)) {
    at::parallel_for(0, N * C, grain(hw), [&](int64_t b0, int64_t e) {
      for (int64_t p = b0; p < e; ++p) {
        const T m = mp[p % C], s = ap[p], t = bp[p];
        const T *x = zp + p * hw, *y = ip + p * hw;
        T* o = op + p * hw;
#pragma omp simd
        for (int64_t i = 0; i < hw; ++i) {
          const T v = (x[i] - m) * s + t + y[i];
          o[i] = v > T(0) ? v : T(0);
        }
      }
    });
    return;
  }
  at::parallel_for(0, N * hw, grain(C), [&](int64_t b0, int64_t e) {
    for (int64_t r = b0; r < e; ++r) {
      const int64_t n = r / hw;
      const T *x = zp + r * C, *y = ip + r * C, *s = ap + n * C, *t = bp + n * C;
      T* o = op + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const T v = (x[c] - mp[c]) * s[c] + t[c] + y[c];
        o[c] = v > T(0) ? v : T(0);
      }
    }
  });
}

// g = grad_out where out > 0 (ReLU's backward, written: the shortcut's gradient), and per
// (n, c) the sums of g and of g * (z - mu[c]): returns (2, N, C) float64.
template <typename T>
void backward_sums_kernel(const at::Tensor& grad_out, const at::Tensor& out,
                          const at::Tensor& z, const at::Tensor& mu, at::Tensor& g,
                          at::Tensor& sums) {
  const int64_t N = z.size(0), C = z.size(1), hw = z.size(2) * z.size(3);
  const T *gp = grad_out.data_ptr<T>(), *op = out.data_ptr<T>(), *zp = z.data_ptr<T>();
  const double* mp = mu.data_ptr<double>();
  T* rp = g.data_ptr<T>();
  double* s1p = sums.data_ptr<double>();
  double* s2p = s1p + N * C;
  if (!channels_last(z)) {
    at::parallel_for(0, N * C, grain(hw), [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const double m = mp[p % C];
        const int64_t o = p * hw;
        // two simple loops over one plane (still in cache for the second) vectorise;
        // one loop with both the store and the sums did not
        T* r = rp + o;
        const T *go = gp + o, *oo = op + o, *x = zp + o;
#pragma omp simd
        for (int64_t i = 0; i < hw; ++i) r[i] = oo[i] <= T(0) ? T(0) : go[i];
        double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t i = 0; i < hw; ++i) {
          s1 += double(r[i]);
          s2 += double(r[i]) * (double(x[i]) - m);
        }
        s1p[p] = s1;
        s2p[p] = s2;
      }
    });
    return;
  }
  // channels_last: whole rows of C per task (streaming, where channel blocks strided),
  // each task summing a chunk of a sample's rows into its own partial sums
  const int64_t chunks = std::max<int64_t>(1, (4 * at::get_num_threads() + N - 1) / N);
  const int64_t rows = (hw + chunks - 1) / chunks;
  auto partial = at::zeros({N * chunks, 2, C}, sums.options());
  double* pp = partial.data_ptr<double>();
  at::parallel_for(0, N * chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t n = t / chunks, i0 = (t % chunks) * rows, i1 = std::min(hw, i0 + rows);
      double *s1 = pp + t * 2 * C, *s2 = s1 + C;
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t o = (n * hw + i) * C;
        T* r = rp + o;
        const T *go = gp + o, *oo = op + o, *x = zp + o;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) r[c] = oo[c] <= T(0) ? T(0) : go[c];
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          s1[c] += double(r[c]);
          s2[c] += double(r[c]) * (double(x[c]) - mp[c]);
        }
      }
    }
  });
  sums.copy_(partial.view({N, chunks, 2, C}).sum(1).permute({1, 0, 2}));
}

// grad_z = A[n, c] * g + B[c] * (z - mu[c]) + E[n, c]: the SE scale's and BN's backward in
// one pass.
template <typename T>
void backward_kernel(const at::Tensor& g, const at::Tensor& z, const at::Tensor& mu,
                     const at::Tensor& A, const at::Tensor& B, const at::Tensor& E,
                     at::Tensor& grad_z) {
  const int64_t N = z.size(0), C = z.size(1), hw = z.size(2) * z.size(3);
  const T *gp = g.data_ptr<T>(), *zp = z.data_ptr<T>(), *mp = mu.data_ptr<T>(),
          *ap = A.data_ptr<T>(), *bp = B.data_ptr<T>(), *ep = E.data_ptr<T>();
  T* dp = grad_z.data_ptr<T>();
  if (!channels_last(z)) {
    at::parallel_for(0, N * C, grain(hw), [&](int64_t b0, int64_t e) {
      for (int64_t p = b0; p < e; ++p) {
        const int64_t c = p % C;
        const T a = ap[p], bb = bp[c], m = mp[c], ee = ep[p];
        const int64_t o = p * hw;
#pragma omp simd
        for (int64_t i = 0; i < hw; ++i) dp[o + i] = a * gp[o + i] + bb * (zp[o + i] - m) + ee;
      }
    });
    return;
  }
  at::parallel_for(0, N * hw, grain(C), [&](int64_t b0, int64_t e) {
    for (int64_t r = b0; r < e; ++r) {
      const int64_t n = r / hw, o = r * C;
      const T *a = ap + n * C, *ee = ep + n * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c)
        dp[o + c] = a[c] * gp[o + c] + bp[c] * (zp[o + c] - mp[c]) + ee[c];
    }
  });
}

at::Tensor plane_stats(const at::Tensor& z) {
  check_maps({z});
  auto out = at::empty({2, z.size(0), z.size(1)}, z.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "plane_stats",
                             [&] { plane_stats_kernel<scalar_t>(z, out); });
  return out;
}

at::Tensor forward(const at::Tensor& z, const at::Tensor& identity, const at::Tensor& mu,
                   const at::Tensor& a, const at::Tensor& b) {
  check_maps({z, identity});
  auto out = at::empty_like(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "forward", [&] {
    forward_kernel<scalar_t>(z, identity, mu.contiguous(), a.contiguous(), b.contiguous(),
                             out);
  });
  return out;
}

std::vector<at::Tensor> backward_sums(const at::Tensor& grad_out, const at::Tensor& out,
                                      const at::Tensor& z, const at::Tensor& mu) {
  check_maps({z, out, grad_out});
  auto g = at::empty_like(z);
  auto sums = at::empty({2, z.size(0), z.size(1)}, z.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "backward_sums", [&] {
    backward_sums_kernel<scalar_t>(grad_out, out, z, mu.contiguous(), g, sums);
  });
  return {g, sums};
}

at::Tensor backward(const at::Tensor& g, const at::Tensor& z, const at::Tensor& mu,
                    const at::Tensor& A, const at::Tensor& B, const at::Tensor& E) {
  check_maps({z, g});
  auto grad_z = at::empty_like(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "backward", [&] {
    backward_kernel<scalar_t>(g, z, mu.contiguous(), A.contiguous(), B.contiguous(),
                              E.contiguous(), grad_z);
  });
  return grad_z;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("plane_stats", &plane_stats, "per-(n, c) mean and squared deviations");
  m.def("forward", &forward, "relu((z - mu) * a + b + identity)");
  m.def("backward_sums", &backward_sums, "ReLU's backward and its per-(n, c) sums");
  m.def("backward", &backward, "A * g + B * (z - mu) + E");
}
