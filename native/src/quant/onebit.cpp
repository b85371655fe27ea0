// onebit: the 1.x-bit tier. Keys: a quarter of the channels (the widest) at 2 bits, the rest sign bits after an
// optional Walsh–Hadamard rotation; values ternary. Layout: common.h.
#include "common.h"

#include <numeric>

namespace repokv {
namespace quant {

const TritTable g_trits;
const TritTableF g_tritsf;

// ---- rotation -------------------------------------------------------------------------------------------------------

namespace {

inline float fixed_sign(int i) { return ob_fixed_sign(i); }  // layout.h: shared with the CUDA kernels

void fwht(float *x, int n) {
    for (int len = 1; len < n; len <<= 1)
        for (int i = 0; i < n; i += len << 1)
            for (int j = i; j < i + len; j++) {
                const float a = x[j], b = x[j + len];
                x[j] = a + b;
                x[j + len] = a - b;
            }
    const float s = 1.0f / std::sqrt((float)n);
    for (int i = 0; i < n; i++) x[i] *= s;
}

}  // namespace

void split_channels(const uint8_t *mask, int D, int *outl, int *norm) {
    int o = 0, m = 0;
    for (int c = 0; c < D; c++) {
        if (mask[c / 8] >> (c % 8) & 1) outl[o++] = c;
        else norm[m++] = c;
    }
}

// the (rotated, if rot) normal channels of x
void rotate_normals(const int *norm, int D, bool rot, const float *x, float *y) {
    const int Dn = ob_dn(D), B = D / 4;
    for (int i = 0; i < Dn; i++) y[i] = rot ? x[norm[i]] * fixed_sign(i) : x[norm[i]];
    if (rot)
        for (int b0 = 0; b0 < Dn; b0 += B) fwht(y + b0, B);
}

namespace {

void unrotate_normals(const int *norm, int D, bool rot, const float *y, float *x) {
    const int Dn = ob_dn(D), B = D / 4;
    std::vector<float> t(y, y + Dn);
    if (rot)
        for (int b0 = 0; b0 < Dn; b0 += B) fwht(t.data() + b0, B);  // normalised WHT is its own inverse
    for (int i = 0; i < Dn; i++) x[norm[i]] = rot ? t[i] * fixed_sign(i) : t[i];
}

// ---- quantizers -----------------------------------------------------------------------------------------------------

void onebit_mask_of(int D, int32_t n, const float *K, uint8_t *mask) {
    std::vector<float> range(D);
    for (int c = 0; c < D; c++) {
        float lo = std::numeric_limits<float>::infinity(), hi = -lo;
        for (int32_t t = 0; t < n; t++) {
            lo = std::min(lo, K[(size_t)t * D + c]);
            hi = std::max(hi, K[(size_t)t * D + c]);
        }
        range[c] = n ? hi - lo : 0;
    }
    std::vector<int> idx(D);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return range[a] > range[b]; });
    memset(mask, 0, D / 8);
    for (int i = 0; i < ob_do(D); i++) mask[idx[i] / 8] |= (uint8_t)(1 << (idx[i] % 8));
}

void quantize_onebit_keys(int D, int32_t n, const float *K, const uint8_t *mask, uint8_t *out) {
    const int Do = ob_do(D), Dn = ob_dn(D);
    const bool rot = ob_rotated(mask, D);
    std::vector<int> outl(Do), norm(Dn);
    split_channels(mask, D, outl.data(), norm.data());
    std::vector<float> Y((size_t)kOneBitBlock * Dn), Xo((size_t)kOneBitBlock * Do);
    uint8_t *p = out;
    for (int32_t t0 = 0; t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, n - t0);
        for (int i = 0; i < nt; i++) {
            const float *x = K + (size_t)(t0 + i) * D;
            rotate_normals(norm.data(), D, rot, x, Y.data() + (size_t)i * Dn);
            for (int j = 0; j < Do; j++) Xo[(size_t)i * Do + j] = x[outl[j]];
        }
        uint8_t *meta = p;
        uint8_t *rows = p + ob_k_block_meta(D);
        const size_t tb = ob_k_token_bytes(D);
        memset(rows, 0, (size_t)nt * tb);
        for (int j = 0; j < Do; j++) {
            float dl, mn;
            asym_params(Xo.data() + j, nt, Do, 2, dl, mn);
            put_h(meta + 2 * j, dl);
            put_h(meta + 2 * Do + 2 * j, mn);
            for (int i = 0; i < nt; i++) rows[(size_t)(j / 4) * nt + i] |= (uint8_t)(asym_code(Xo[(size_t)i * Do + j], dl, mn, 2) << (2 * (j % 4)));
        }
        uint8_t *mmeta = meta + 4 * Do;
        for (int j = 0; j < Dn; j++) {
            // two-level Lloyd step around the mean: levels = means of the values above / below it
            double mean = 0;
            for (int i = 0; i < nt; i++) mean += Y[(size_t)i * Dn + j];
            mean /= nt;
            double hi = 0, lo = 0;
            int nh = 0, nl = 0;
            for (int i = 0; i < nt; i++) {
                const float y = Y[(size_t)i * Dn + j];
                if (y >= mean) hi += y, nh++;
                else lo += y, nl++;
            }
            const double chi = nh ? hi / nh : mean, clo = nl ? lo / nl : mean;
            const float mu = round_h((float)((chi + clo) / 2)), al = round_h((float)((chi - clo) / 2));
            put_h(mmeta + 2 * j, mu);
            put_h(mmeta + 2 * Dn + 2 * j, al);
            for (int i = 0; i < nt; i++)
                if (Y[(size_t)i * Dn + j] >= mu) rows[(size_t)(Do / 4 + j / 8) * nt + i] |= (uint8_t)(1 << (j % 8));
        }
        p = rows + (size_t)nt * tb;
    }
}

void quantize_onebit_values(int D, int32_t n, const float *V, uint8_t *out) {
    uint8_t *p = out;
    const size_t tb = ob_v_token_bytes(D);
    static const int pow3[5] = {81, 27, 9, 3, 1};  // channel 5k + i is trit i of byte k (see trit_byte)
    for (int32_t t0 = 0; t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, n - t0);
        uint8_t *meta = p;
        uint8_t *rows = p + ob_v_block_meta(D);
        memset(rows, 0, (size_t)nt * tb);
        for (int c = 0; c < D; c++) {
            double sa = 0;
            for (int i = 0; i < nt; i++) sa += std::fabs(V[(size_t)(t0 + i) * D + c]);
            const float tau = (float)(0.5 * sa / nt);
            double snz = 0;
            int nnz = 0;
            for (int i = 0; i < nt; i++) {
                const float x = V[(size_t)(t0 + i) * D + c];
                if (std::fabs(x) > tau) snz += std::fabs(x), nnz++;
            }
            const float gamma = round_h(nnz ? (float)(snz / nnz) : 0.0f);  // least-squares scale of the chosen codes
            put_h(meta + 2 * c, gamma);
            for (int i = 0; i < nt; i++) {
                const float x = V[(size_t)(t0 + i) * D + c];
                const int trit = std::fabs(x) > tau ? (x > 0 ? 2 : 0) : 1;
                rows[(size_t)i * tb + c / 5] += (uint8_t)(trit * pow3[c % 5]);
            }
        }
        for (size_t i = 0; i < (size_t)nt * tb; i++) rows[i] = trit_byte(rows[i]);
        p = rows + (size_t)nt * tb;
    }
}

void dequantize_onebit_keys(int D, int32_t n, const uint8_t *meta_seg, const uint8_t *kbuf, float *K) {
    const int Do = ob_do(D), Dn = ob_dn(D);
    std::vector<int> outl(Do), norm(Dn);
    split_channels(meta_seg, D, outl.data(), norm.data());
    std::vector<float> y(Dn);
    const size_t tb = ob_k_token_bytes(D);
    const uint8_t *p = kbuf;
    for (int32_t t0 = 0; t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, n - t0);
        const uint8_t *meta = p, *rows = p + ob_k_block_meta(D), *mmeta = meta + 4 * Do;
        for (int i = 0; i < nt; i++) {
            float *k = K + (size_t)(t0 + i) * D;
            for (int j = 0; j < Do; j++) k[outl[j]] = get_h(meta + 2 * Do + 2 * j) + get_h(meta + 2 * j) * (float)(rows[(size_t)(j / 4) * nt + i] >> (2 * (j % 4)) & 3);
            for (int j = 0; j < Dn; j++) {
                const bool bit = rows[(size_t)(Do / 4 + j / 8) * nt + i] >> (j % 8) & 1;
                y[j] = get_h(mmeta + 2 * j) + get_h(mmeta + 2 * Dn + 2 * j) * (bit ? 1.0f : -1.0f);
            }
            unrotate_normals(norm.data(), D, ob_rotated(meta_seg, D), y.data(), k);
        }
        p = rows + (size_t)nt * tb;
    }
}

}  // namespace

OneBitQuery onebit_query(const QuantSegment &seg, const float *q, int R) {
    const int D = seg.head_dim, Do = ob_do(D), Dn = ob_dn(D);
    std::vector<int> outl(Do), norm(Dn);
    split_channels(seg.meta.data(), D, outl.data(), norm.data());
    OneBitQuery oq{std::vector<float>((size_t)R * Do), std::vector<float>((size_t)R * Dn)};
    for (int r = 0; r < R; r++) {
        const float *qr = q + (size_t)r * D;
        for (int j = 0; j < Do; j++) oq.qo[(size_t)r * Do + j] = qr[outl[j]];
        rotate_normals(norm.data(), D, ob_rotated(seg.meta.data(), D), qr, oq.qn.data() + (size_t)r * Dn);
    }
    return oq;
}

void quantize_onebit(QuantSegment &s, const float *K, const float *V, const uint8_t *onebit_meta) {
    const int D = s.head_dim;
    const int32_t n = s.n;
    const ByteCount bc = format_bytes(s.format, D, n);
    if (onebit_meta) {
        memcpy(s.meta.data(), onebit_meta, bc.meta);
        quantize_onebit_keys(D, n, K, s.meta.data(), s.k.data());
    } else {
        // outlier channels from the data; rotate the normal channels or not, whichever reconstructs the
        // keys better (the flag is part of the segment's metadata)
        onebit_mask_of(D, n, K, s.meta.data());
        double err[2];
        std::vector<uint8_t> kb[2] = {std::vector<uint8_t>(bc.key, 0), std::vector<uint8_t>(bc.key, 0)};
        std::vector<float> Kd((size_t)n * D);
        for (int rot = 0; rot < 2; rot++) {
            s.meta[D / 8] = (uint8_t)rot;
            quantize_onebit_keys(D, n, K, s.meta.data(), kb[rot].data());
            dequantize_onebit_keys(D, n, s.meta.data(), kb[rot].data(), Kd.data());
            err[rot] = 0;
            for (size_t i = 0; i < Kd.size(); i++) err[rot] += (double)(Kd[i] - K[i]) * (Kd[i] - K[i]);
        }
        const int best = err[1] <= err[0] ? 1 : 0;
        s.meta[D / 8] = (uint8_t)best;
        memcpy(s.k.data(), kb[best].data(), bc.key);
    }
    quantize_onebit_values(D, n, V, s.v.data());
}

void dequantize_onebit(const QuantSegment &seg, float *K, float *V) {
    const int D = seg.head_dim;
    const int32_t n = seg.n;
    dequantize_onebit_keys(D, n, seg.meta.data(), seg.k.data(), K);
    const size_t vb = ob_v_token_bytes(D);
    const uint8_t *p = seg.v.data();
    for (int32_t t0 = 0; t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, n - t0);
        const uint8_t *meta = p, *rows = p + ob_v_block_meta(D);
        for (int i = 0; i < nt; i++)
            for (int c = 0; c < D; c++) V[(size_t)(t0 + i) * D + c] = get_h(meta + 2 * c) * (float)g_trits.t[rows[(size_t)i * vb + c / 5]][c % 5];
        p = rows + (size_t)nt * vb;
    }
}

void onebit_rotate_normals(const uint8_t *meta, int D, const float *x, float *out) {
    std::vector<int> outl(ob_do(D)), norm(ob_dn(D));
    split_channels(meta, D, outl.data(), norm.data());
    rotate_normals(norm.data(), D, ob_rotated(meta, D), x, out);
}

}  // namespace quant
}  // namespace repokv
