/* Row kernels of smoothlab's loss family for float32 logits: loss and gradient in one call.
 *
 * Notation (the same in smoothlab/losses/_kernels.py and smoothlab/_triton/rows.py):
 *
 *   target      q = a e_y + b pi + r T      a, b, r per row; pi a (C,) prior vector (1/C when
 *                                           absent); T the row's own distribution (a per-example
 *                                           prior, or probability targets) times class weights w
 *   mass        Q = a + b sum(pi) + r sum(T)
 *   statistics  m = max z, e_j = exp(z_j - m), S = sum e_j, lse = m + log S, pz = pi . z,
 *               tz = T . z, tsum = sum(T), ez = sum e_j z_j (terms with a zero left factor are 0)
 *   gradient    g_j = ce e_j + cez e_j z_j - cb pi_j - cr T_j,   g_y -= ca
 *               (s times d loss / dz; each c_x is the per-row coefficient of the term x)
 *
 * Kinds (and losses_kinds.h: focal, GCE, SCE, and cross-entropy plus a logit regulariser):
 *        SMOOTH  cross-entropy against q: loss = Q lse - a z_y - b pz - r tz, whose gradient
 *                s (Q p - q) is ce = s Q / S, cez = 0, cb = s b, cr = s r, ca = s a
 *        RELAX   label relaxation with alpha = strength, per-row weight a
 *        PENALTY cross-entropy minus beta H(p) (beta = strength), hinged at tau unless tau is
 *                NaN, per-row weight a; the cross-entropy is against y or against T
 *
 * Options of every kind: zloss adds zloss lse^2 per counted row (PaLM's z-loss), and softcap
 * replaces z by softcap tanh(z / softcap) before everything else (Gemma 2), the gradient
 * multiplied by the chain rule's 1 - (capped / softcap)^2.
 *
 * The kernels make one sweep for the maximum, one for the sums (storing e_j in g), then the row
 * arithmetic, then one sweep writing g; the PyTorch and Triton kernels compute the same
 * numbers, and the tests compare them.
 *
 * Rows with few classes (C <= SMALL_C) are transposed in blocks of LANES rows, so that every
 * sweep runs across rows (SIMD over examples) instead of across ten classes.
 *
 * Compiled with -fno-math-errno -fno-trapping-math and without -ffast-math: infinities and NaNs
 * keep their IEEE meaning (a row with a NaN logit gets NaN loss and gradient, as in PyTorch).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

enum { SMOOTH = 0, RELAX = 1, PENALTY = 2 };
enum { SMALL_C = 64, LANES = 64 };

typedef union { float f; int32_t i; } bits32;

/* a b + c, fused where the CPU has FMA (GCC does not contract a * b + c in ISO C mode) */
#if defined(__FMA__)
#define MADD(a, b, c) fmaf(a, b, c)
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* exp(x) for x <= 88, within 2 ulp; 0 for x < -104 (so exp(-inf) = 0), NaN for NaN.
 * Cody-Waite reduction x = n log 2 + r, |r| <= log(2)/2, degree-7 Taylor polynomial, and the
 * scale 2^n applied as two halves so that n down to -150 (subnormal results) stays exact. */
static inline float sl_exp(float x) {
    x = x < -104.0f ? -104.0f : x;
    float n = MADD(x, 1.44269504088896341f, 12582912.0f) - 12582912.0f;
    int32_t ni = (int32_t)n;
    float r = MADD(n, -0.693145751953125f, x);
    r = MADD(n, -1.428606765330187045e-06f, r);
    float p = 1.0f / 5040.0f;
    p = MADD(p, r, 1.0f / 720.0f);
    p = MADD(p, r, 1.0f / 120.0f);
    p = MADD(p, r, 1.0f / 24.0f);
    p = MADD(p, r, 1.0f / 6.0f);
    p = MADD(p, r, 0.5f);
    p = MADD(p, r, 1.0f);
    p = MADD(p, r, 1.0f);
    int32_t half = ni >> 1;
    bits32 hi, lo;
    hi.i = (half + 127) << 23;
    lo.i = (ni - half + 127) << 23;
    return p * hi.f * lo.f;
}

/* log(x) for float x within 3 ulp: x = 2^k f with f in [sqrt(1/2), sqrt(2)), and
 * log f = 2 atanh(t) = 2 (t + t^3/3 + ... + t^9/9), t = (f - 1) / (f + 1), |t| <= 0.172.
 * log(0) = -inf, log(inf) = inf, log(x < 0) = NaN, NaN stays NaN; subnormals are rescaled. */
static inline float sl_log(float x) {
    bits32 b;
    int tiny = x < 1.17549435e-38f;
    b.f = tiny ? x * 8388608.0f : x;
    int32_t k = ((b.i >> 23) & 0xff) - 127;
    b.i = (b.i & 0x007fffff) | 0x3f800000; /* f in [1, 2) */
    float f = b.f;
    int big = f > 1.41421356f;
    f = big ? f * 0.5f : f;
    k = big ? k + 1 : k;
    float t = (f - 1.0f) / (f + 1.0f), t2 = t * t;
    float p = 1.0f / 9.0f;
    p = MADD(p, t2, 1.0f / 7.0f);
    p = MADD(p, t2, 1.0f / 5.0f);
    p = MADD(p, t2, 1.0f / 3.0f);
    p = MADD(p, t2, 1.0f);
    float kf = (float)k - (tiny ? 23.0f : 0.0f);
    float r = MADD(kf, 0.693145751953125f, MADD(kf, 1.428606765330187045e-06f, 2.0f * t * p));
    r = x == 0.0f ? -INFINITY : r;
    r = x < 0.0f ? NAN : r;
    return x == INFINITY || x != x ? x : r;
}

/* Per-row statistics in, per-row loss and gradient terms out, for n rows (SIMD across rows). */
typedef struct {
    const float *a, *b, *r;           /* the rows' a, b, r (a: the weight for RELAX, PENALTY) */
    float *m, *s, *pz, *ez, *zy, *ey; /* the statistics m, S, pz, ez, z_y, e_y (header) */
    float *tz, *tsum;                 /* tz and tsum (SMOOTH and PENALTY with T) */
    float *loss, *ce, *cez, *cb, *ca; /* the loss and the gradient's coefficients (header) */
    float *cr;
} lanes_t;

/* The arguments of sl_rows, by name (smoothlab/losses/_native_rows.py mirrors this struct).
 * Every pointer addresses row 0 of the call's rows; sl_rows runs the range [lo, hi) of them. */
typedef struct {
    int32_t kind, grad;       /* SMOOTH, RELAX or PENALTY; write the gradient into g */
    int64_t classes;          /* C */
    const float *z;           /* (rows, C) logits */
    float *g;                 /* (rows, C) gradient, scale times d loss / dz (may be z), or NULL */
    const int64_t *y;         /* (rows,) class indices, or NULL (probability targets) */
    const uint8_t *valid;     /* (rows,) 0 = ignored (loss 0), or NULL */
    float *loss;              /* (rows,) the losses, out */
    const float *a, *b, *r;   /* per-row coefficients (NULL: a0, b0, r0 for all rows) */
    float a0, b0, r0;
    const float *pi;          /* (C,) prior vector, or NULL for 1/C */
    float pi_sum;             /* its total mass */
    const float *t, *tw;      /* (rows, C) distributions T (or NULL), their (C,) class weights w */
    float strength, tau;      /* alpha (RELAX) or beta (PENALTY); the penalty's threshold (NaN) */
    float scale;              /* d reduced loss / d summed loss (the gradient's factor s) */
    float zloss;              /* + zloss lse^2 per counted row (PaLM's z-loss), or 0 */
    float softcap;            /* z_j <- softcap tanh(z_j / softcap) first, or 0 for none */
    float param;              /* a second hyperparameter of the kinds of losses_kinds.h */
} spec_t;

static void smooth_math(const spec_t *sp, int64_t n, lanes_t L) {
    const float *a = L.a, *b = L.b, *r = L.r;
    const float scale = sp->scale, pi_sum = sp->pi_sum;
    const float per = sp->pi ? scale : scale / (float)sp->classes;
#pragma omp simd
    for (int64_t l = 0; l < n; l++) {
        float mass = a[l] + b[l] * pi_sum + r[l] * L.tsum[l], lse = L.m[l] + sl_log(L.s[l]);
        float loss = mass * lse - (a[l] != 0.0f ? a[l] * L.zy[l] : 0.0f);
        loss -= b[l] != 0.0f ? b[l] * L.pz[l] : 0.0f;
        L.loss[l] = loss - (r[l] != 0.0f ? r[l] * L.tz[l] : 0.0f);
        L.ce[l] = scale * mass / L.s[l];
        L.cez[l] = 0.0f;
        L.cb[l] = per * b[l];
        L.cr[l] = scale * r[l];
        L.ca[l] = scale * a[l];
    }
}

/* Label relaxation (Lienen & Hüllermeier, Eq. 5): zero inside the set p_y >= 1 - alpha, else
 * (1 - alpha) log((1 - alpha) / p_y) + alpha log(alpha / (1 - p_y)), gradient kappa (p - e_y). */
static void relax_math(const spec_t *sp, int64_t n, lanes_t L) {
    const float *w = L.a, alpha = sp->strength, scale = sp->scale;
    const float keep = 1.0f - alpha, border = (float)log1p(-(double)alpha);
    const float log_alpha = (float)log((double)alpha);
#pragma omp simd
    for (int64_t l = 0; l < n; l++) {
        float log_p_y = L.zy[l] - (L.m[l] + sl_log(L.s[l]));
        float p_y = L.ey[l] / L.s[l], rest = 1.0f - p_y;
        int inside = log_p_y >= border;
        float kl = keep * (border - log_p_y) + alpha * (log_alpha - sl_log(rest));
        float coef = (keep - p_y) / rest * scale * w[l];
        L.loss[l] = inside ? 0.0f : (kl < 0.0f ? 0.0f : kl) * w[l]; /* NaN stays NaN */
        L.ce[l] = inside ? 0.0f : coef / L.s[l];
        L.cez[l] = L.cb[l] = 0.0f;
        L.ca[l] = inside ? 0.0f : coef;
    }
}

/* The confidence penalty (Pereyra et al.): CE - beta H(p), or CE + beta max(0, tau - H(p)).
 * CE is lse - z_y for class indices, or Q lse - tz against T (probability targets times
 * class weights, Q = tsum), whose gradient Q p - T takes the T term with cr = s w. */
static void penalty_math(const spec_t *sp, int64_t n, lanes_t L) {
    const float *w = L.a, beta = sp->strength, tau = sp->tau, scale = sp->scale;
    const int hinge = !isnan(tau), rows = sp->t != 0;
#pragma omp simd
    for (int64_t l = 0; l < n; l++) {
        float lse = L.m[l] + sl_log(L.s[l]), entropy = lse - L.ez[l] / L.s[l];
        float gamma = beta, penalty = -entropy;
        if (hinge) {
            penalty = entropy > tau ? 0.0f : tau - entropy;
            gamma = entropy < tau ? beta : 0.0f;
        }
        float sw = scale * w[l], mass = rows ? L.tsum[l] : 1.0f;
        float xent = rows ? mass * lse - L.tz[l] : lse - L.zy[l];
        L.loss[l] = w[l] * (xent + beta * penalty);
        L.ce[l] = sw * (mass + gamma * (entropy - lse)) / L.s[l];
        L.cez[l] = sw * gamma / L.s[l];
        L.cb[l] = 0.0f;
        L.cr[l] = rows ? sw : 0.0f;
        L.ca[l] = rows ? 0.0f : sw;
    }
}

/* The z-loss (PaLM, Chowdhery et al. 2022): + zloss lse^2 on each counted row (valid[l], all
 * rows when valid is NULL); its gradient 2 zloss lse p_j is a share of ce e_j. */
static void zloss_math(const spec_t *sp, int64_t n, lanes_t L, const uint8_t *valid) {
    const float zs = sp->zloss, scale = sp->scale;
#pragma omp simd
    for (int64_t l = 0; l < n; l++) {
        float lse = L.m[l] + sl_log(L.s[l]);
        int counted = valid ? valid[l] != 0 : 1;
        L.loss[l] += counted ? zs * lse * lse : 0.0f;
        L.ce[l] += counted ? 2.0f * scale * zs * lse / L.s[l] : 0.0f;
    }
}

static void py_math(const spec_t *sp, int64_t n, lanes_t L); /* losses_kinds.h */

static void row_math(const spec_t *sp, int64_t n, lanes_t L) {
    if (sp->kind == SMOOTH) smooth_math(sp, n, L);
    else if (sp->kind == RELAX) relax_math(sp, n, L);
    else if (sp->kind == PENALTY) penalty_math(sp, n, L);
    else py_math(sp, n, L);
}

/* The tanh softcap (Gemma 2): capped[j] = cap tanh(z[j] / cap), and the chain rule's factor
 * d capped / dz = 1 - (capped / cap)^2 applied to a gradient computed against capped. */
static void cap_row(const float *z, float *capped, int64_t n, float cap) {
    for (int64_t j = 0; j < n; j++) capped[j] = cap * tanhf(z[j] / cap);
}

static void uncap_grad(const float *capped, float *g, int64_t n, float cap) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) g[j] *= 1.0f - (capped[j] / cap) * (capped[j] / cap);
}

/* Sums over a row in float SIMD lanes per block of BLOCK classes, blocks added in double: as
 * accurate as pairwise summation for a 256k-class row, at the speed of float arithmetic. */
enum { BLOCK = 1024 };

/* One row of many classes. With g == z (in place) the penalty's last sweep still needs z_j, so
 * e_j goes to the row buffer tmp (or, without one, is computed again in that sweep). */
static void wide_row(const spec_t *sp, const float *z, float *g, int64_t i, int64_t y, float *loss,
                     float *tmp) {
    const int64_t C = sp->classes;
    float a = sp->a ? sp->a[i] : sp->a0, b = sp->b ? sp->b[i] : sp->b0;
    float r = sp->r ? sp->r[i] : sp->r0, tz, tsum, cr = 0.0f;
    float m = z[0], pz = 0.0f, zy = y < 0 ? 0.0f : z[y], sf, ef, ey, ce, cez, cb, ca;
    int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
    for (int64_t j = 0; j < C; j++) {
        m = z[j] > m ? z[j] : m;
        nan |= z[j] != z[j];
    }
    m = nan ? NAN : m;
    const float *pi = sp->pi, *t = sp->t ? sp->t + i * C : 0, *tw = sp->tw;
    const int store = g != 0 && !(sp->kind == PENALTY && g == z);
    const int pdot = sp->kind == SMOOTH && b != 0.0f, penalty = sp->kind == PENALTY;
    const int tdot = t && ((sp->kind == SMOOTH && r != 0.0f) || sp->kind == PENALTY);
    double s = 0.0, ez = 0.0, pz_sum = 0.0, tz_sum = 0.0, tsum_sum = 0.0;
    for (int64_t j0 = 0; j0 < C; j0 += BLOCK) {
        const int64_t j1 = C - j0 < BLOCK ? C : j0 + BLOCK;
        float bs = 0.0f, bez = 0.0f, bpz = 0.0f, btz = 0.0f, btsum = 0.0f;
        if (tdot && tw) {
#pragma omp simd reduction(+ : btz, btsum)
            for (int64_t j = j0; j < j1; j++) {
                float wt = tw[j] * t[j];
                btz += wt != 0.0f ? wt * z[j] : 0.0f;
                btsum += wt;
            }
        } else if (tdot) {
#pragma omp simd reduction(+ : btz, btsum)
            for (int64_t j = j0; j < j1; j++) {
                btz += t[j] != 0.0f ? t[j] * z[j] : 0.0f;
                btsum += t[j];
            }
        }
        if (pdot && pi) {
#pragma omp simd reduction(+ : bpz)
            for (int64_t j = j0; j < j1; j++) bpz += pi[j] != 0.0f ? pi[j] * z[j] : 0.0f;
        } else if (pdot) {
#pragma omp simd reduction(+ : bpz)
            for (int64_t j = j0; j < j1; j++) bpz += z[j];
        }
        if (penalty && (store || tmp)) {
            float *out = store ? g : tmp;
#pragma omp simd reduction(+ : bs, bez)
            for (int64_t j = j0; j < j1; j++) {
                float ej = sl_exp(z[j] - m);
                out[j] = ej;
                bs += ej;
                bez += ej != 0.0f ? ej * z[j] : 0.0f;
            }
        } else if (penalty) {
#pragma omp simd reduction(+ : bs, bez)
            for (int64_t j = j0; j < j1; j++) {
                float ej = sl_exp(z[j] - m);
                bs += ej;
                bez += ej != 0.0f ? ej * z[j] : 0.0f;
            }
        } else if (store) {
#pragma omp simd reduction(+ : bs)
            for (int64_t j = j0; j < j1; j++) {
                float ej = sl_exp(z[j] - m);
                g[j] = ej;
                bs += ej;
            }
        } else {
#pragma omp simd reduction(+ : bs)
            for (int64_t j = j0; j < j1; j++) bs += sl_exp(z[j] - m);
        }
        s += bs;
        ez += bez;
        pz_sum += bpz;
        tz_sum += btz;
        tsum_sum += btsum;
    }
    pz = (float)(pi ? pz_sum : pz_sum / (double)C);
    tz = (float)tz_sum;
    tsum = (float)tsum_sum;
    sf = (float)s;
    ef = (float)ez;
    ey = y < 0 ? 0.0f : store ? g[y] : penalty && tmp ? tmp[y] : sl_exp(zy - m);
    lanes_t L = {&a,  &b, &r,   &m,   &sf,  &pz,  &ef, &zy, &ey,
                 &tz, &tsum, loss, &ce, &cez, &cb, &ca, &cr};
    row_math(sp, 1, L);
    if (sp->zloss != 0.0f) zloss_math(sp, 1, L, sp->valid ? sp->valid + i : 0);
    if (sp->valid && !sp->valid[i]) *loss = 0.0f;
    if (!sp->grad || g == 0) return;
    if (penalty && !store && tmp) {
#pragma omp simd
        for (int64_t j = 0; j < C; j++) g[j] = tmp[j] != 0.0f ? tmp[j] * (ce + cez * z[j]) : 0.0f;
    } else if (penalty && !store) {
#pragma omp simd
        for (int64_t j = 0; j < C; j++) {
            float ej = sl_exp(z[j] - m);
            g[j] = ej != 0.0f ? ej * (ce + cez * z[j]) : 0.0f;
        }
    } else if (penalty) {
#pragma omp simd
        for (int64_t j = 0; j < C; j++) g[j] = g[j] != 0.0f ? g[j] * (ce + cez * z[j]) : 0.0f;
    } else if (pi && cb != 0.0f) {
#pragma omp simd
        for (int64_t j = 0; j < C; j++) g[j] = ce * g[j] - cb * pi[j];
    } else {
#pragma omp simd
        for (int64_t j = 0; j < C; j++) g[j] = ce * g[j] - cb;
    }
    if (tdot && tw) {
#pragma omp simd
        for (int64_t j = 0; j < C; j++) g[j] -= cr * (tw[j] * t[j]);
    } else if (tdot) {
#pragma omp simd
        for (int64_t j = 0; j < C; j++) g[j] -= cr * t[j];
    }
    if (y >= 0) g[y] -= ca;
}

/* An 8 x 8 transpose in registers (AVX2 builds). */
#if defined(__AVX2__)
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
        r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
    }
}

#endif

#if defined(__GNUC__)
#define SL_INLINE static inline __attribute__((always_inline))
#else
#define SL_INLINE static inline
#endif

/* Row-major z (n rows of C) to class-major zt[j * LANES + l], and back. A full block with
 * C >= 8 moves as 8 x 8 tiles in registers; the last tile of a row starts at C - 8, overlapping
 * the one before it, so that every load and store is a whole unaligned vector inside the row.
 * With C < 8 the tiles are read with masked loads (fast on every AVX2 CPU, unlike masked
 * stores) and written back one float at a time, as are partial blocks. */
#if defined(__AVX2__)
/* Eight rows of eight floats, src[k * from + i] for k, i < 8, stored transposed at
 * dst[i * to + k]. */
static inline void move8(const float *src, int64_t from, float *dst, int64_t to) {
    __m256 r[8];
    for (int k = 0; k < 8; k++) r[k] = _mm256_loadu_ps(src + k * from);
    transpose8(r);
    for (int k = 0; k < 8; k++) _mm256_storeu_ps(dst + k * to, r[k]);
}
#endif

static void to_lanes(const float *z, float *zt, int64_t n, int64_t C) {
#if defined(__AVX2__)
    if (n == LANES) {
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)C),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int64_t l0 = 0; l0 < LANES; l0 += 8) {
            if (C < 8) {
                __m256 r[8];
                for (int k = 0; k < 8; k++) r[k] = _mm256_maskload_ps(z + (l0 + k) * C, mask);
                transpose8(r);
                for (int64_t k = 0; k < C; k++) _mm256_storeu_ps(zt + k * LANES + l0, r[k]);
                continue;
            }
            for (int64_t j0 = 0; j0 < C; j0 += 8) {
                const int64_t j = j0 + 8 <= C ? j0 : C - 8;
                move8(z + l0 * C + j, C, zt + j * LANES + l0, LANES);
            }
        }
        return;
    }
#endif
    for (int64_t j = 0; j < C; j++)
        for (int64_t l = 0; l < LANES; l++) zt[j * LANES + l] = l < n ? z[l * C + j] : 0.0f;
}

static void from_lanes(const float *et, float *g, int64_t n, int64_t C) {
#if defined(__AVX2__)
    if (n == LANES && C >= 8) {
        for (int64_t l0 = 0; l0 < LANES; l0 += 8)
            for (int64_t j0 = 0; j0 < C; j0 += 8) {
                const int64_t j = j0 + 8 <= C ? j0 : C - 8;
                move8(et + j * LANES + l0, LANES, g + l0 * C + j, C);
            }
        return;
    }
#endif
    for (int64_t l = 0; l < n; l++)
        for (int64_t j = 0; j < C; j++) g[l * C + j] = et[j * LANES + l];
}

/* LANES rows of few classes at once, transposed so that every loop runs across rows; inlined
 * once per kind, prior vector (or uniform) and rows term T (transposed like z, times its class
 * weights), so that each sweep computes only what its kind needs.
 * A NaN logit needs no flag here: exp(NaN - m) makes the row's sum S, and with it the loss and
 * every gradient entry, NaN (and a NaN maximum makes every exp NaN). */
SL_INLINE double narrow_kind(const spec_t *sp, const float *z, float *g, int64_t row0, int64_t n,
                             const int64_t *y, float *loss, const int kind, const int vector,
                             const int rows) {
    const int64_t C = sp->classes;
    float zt[SMALL_C * LANES], et[SMALL_C * LANES], tt[SMALL_C * LANES];
    float m[LANES], s[LANES], pz[LANES], ez[LANES], zy[LANES], ey[LANES], tz[LANES], tsum[LANES];
    float a[LANES], b[LANES], r[LANES], ce[LANES], cez[LANES], cb[LANES], ca[LANES], cr[LANES];
    to_lanes(z, zt, n, C);
    if (sp->softcap > 0.0f) cap_row(zt, zt, C * LANES, sp->softcap);
    if (rows) {
        to_lanes(sp->t + row0 * C, tt, n, C);
        for (int64_t j = 0; sp->tw && j < C; j++) {
            const float w = sp->tw[j];
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++) tt[j * LANES + l] *= w;
        }
    }
    for (int64_t l = 0; l < LANES; l++) {
        a[l] = sp->a0;
        b[l] = sp->b0;
        r[l] = sp->r0;
    }
    if (sp->a) memcpy(a, sp->a + row0, (size_t)n * sizeof(float));
    if (sp->b) memcpy(b, sp->b + row0, (size_t)n * sizeof(float));
    if (sp->r) memcpy(r, sp->r + row0, (size_t)n * sizeof(float));
#pragma omp simd
    for (int64_t l = 0; l < LANES; l++) {
        m[l] = zt[l];
        s[l] = pz[l] = ez[l] = zy[l] = ey[l] = tz[l] = tsum[l] = 0.0f;
    }
    for (int64_t j = 0; j < C; j++) {
        const float *zj = zt + j * LANES, *tl = tt + j * LANES;
        const float pj = vector ? sp->pi[j] : 1.0f / (float)C;
        if (kind == SMOOTH) {
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++) {
                m[l] = zj[l] > m[l] ? zj[l] : m[l];
                pz[l] += vector && pj == 0.0f ? 0.0f : pj * zj[l];
                if (rows) {
                    tz[l] += tl[l] == 0.0f ? 0.0f : tl[l] * zj[l];
                    tsum[l] += tl[l];
                }
            }
        } else if (kind == PENALTY && rows) {
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++) {
                m[l] = zj[l] > m[l] ? zj[l] : m[l];
                tz[l] += tl[l] == 0.0f ? 0.0f : tl[l] * zj[l];
                tsum[l] += tl[l];
            }
        } else {
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++) m[l] = zj[l] > m[l] ? zj[l] : m[l];
        }
    }
    for (int64_t j = 0; j < C; j++) {
        const float *zj = zt + j * LANES;
        float *ej = et + j * LANES;
        if (kind == PENALTY) {
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++) {
                float x = sl_exp(zj[l] - m[l]);
                ej[l] = x;
                s[l] += x;
                ez[l] += x != 0.0f ? x * zj[l] : 0.0f;
            }
        } else {
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++) {
                float x = sl_exp(zj[l] - m[l]);
                ej[l] = x;
                s[l] += x;
            }
        }
    }
    for (int64_t l = 0; y && l < n; l++) {
        zy[l] = zt[y[l] * LANES + l];
        ey[l] = et[y[l] * LANES + l];
    }
    lanes_t L = {a, b, r, m, s, pz, ez, zy, ey, tz, tsum, loss, ce, cez, cb, ca, cr};
    row_math(sp, n, L);
    if (sp->zloss != 0.0f) zloss_math(sp, n, L, sp->valid ? sp->valid + row0 : 0);
    if (sp->valid)
        for (int64_t l = 0; l < n; l++) loss[l] = sp->valid[row0 + l] ? loss[l] : 0.0f;
    double total = 0.0;
#pragma omp simd reduction(+ : total)
    for (int64_t l = 0; l < n; l++) total += loss[l];
    if (!sp->grad || g == 0) return total;
    for (int64_t j = 0; j < C; j++) {
        const float *zj = zt + j * LANES, *tl = tt + j * LANES;
        float *ej = et + j * LANES;
        const float pj = vector ? sp->pi[j] : 1.0f;
        if (kind == PENALTY && rows) {
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++)
                ej[l] = (ej[l] != 0.0f ? ej[l] * (ce[l] + cez[l] * zj[l]) : 0.0f) - cr[l] * tl[l];
        } else if (kind == PENALTY) {
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++)
                ej[l] = ej[l] != 0.0f ? ej[l] * (ce[l] + cez[l] * zj[l]) : 0.0f;
        } else if (kind == SMOOTH && rows) {
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++) ej[l] = ce[l] * ej[l] - cb[l] * pj - cr[l] * tl[l];
        } else if (kind == SMOOTH) {
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++) ej[l] = ce[l] * ej[l] - cb[l] * pj;
        } else {
#pragma omp simd
            for (int64_t l = 0; l < LANES; l++) ej[l] = ce[l] * ej[l];
        }
    }
    for (int64_t l = 0; y && l < n; l++) et[y[l] * LANES + l] -= ca[l];
    if (sp->softcap > 0.0f) uncap_grad(zt, et, C * LANES, sp->softcap);
    from_lanes(et, g, n, C);
    return total;
}

static double narrow_block(const spec_t *sp, const float *z, float *g, int64_t row0, int64_t n,
                           const int64_t *y, float *loss) {
    const int vector = sp->pi != 0, rows = sp->t != 0;
    if (sp->kind == SMOOTH && vector && rows)
        return narrow_kind(sp, z, g, row0, n, y, loss, SMOOTH, 1, 1);
    if (sp->kind == SMOOTH && rows) return narrow_kind(sp, z, g, row0, n, y, loss, SMOOTH, 0, 1);
    if (sp->kind == SMOOTH && vector) return narrow_kind(sp, z, g, row0, n, y, loss, SMOOTH, 1, 0);
    if (sp->kind == SMOOTH) return narrow_kind(sp, z, g, row0, n, y, loss, SMOOTH, 0, 0);
    if (sp->kind != PENALTY) /* RELAX and the p_y kinds of losses_kinds.h: the same sweeps */
        return narrow_kind(sp, z, g, row0, n, y, loss, RELAX, 0, 0);
    if (rows) return narrow_kind(sp, z, g, row0, n, y, loss, PENALTY, 0, 1);
    return narrow_kind(sp, z, g, row0, n, y, loss, PENALTY, 0, 0);
}

#include "losses_kinds.h"

/* Loss (and, with grad, scale times the gradient) of rows [lo, hi) of the (rows, C) float32
 * logits sp->z: losses into sp->loss (0 where valid is 0), their sum (in double) into *total.
 * Returns 0, or 1 when a row buffer could not be allocated. */
int sl_rows(const spec_t *sp, int64_t lo, int64_t hi, double *total) {
    const int64_t classes = sp->classes;
    const float *z = sp->z;
    float *g = sp->grad ? sp->g : 0;
    double total_sum = 0.0;
    if (sp->kind >= LPEN) {
        *total = logit_rows(sp, lo, hi);
        return 0;
    }
    if (classes <= SMALL_C) {
        for (int64_t i = lo; i < hi; i += LANES) {
            int64_t n = hi - i < LANES ? hi - i : LANES;
            total_sum += narrow_block(sp, z + i * classes, g ? g + i * classes : 0, i, n,
                                sp->y ? sp->y + i : 0, sp->loss + i);
        }
    } else if (sp->softcap > 0.0f) {
        /* each row capped into a buffer first (so g never aliases the logits it reads) */
        float *capped = malloc((size_t)classes * sizeof(float));
        if (!capped) return 1;
        for (int64_t i = lo; i < hi; i++) {
            float *gi = g ? g + i * classes : 0;
            cap_row(z + i * classes, capped, classes, sp->softcap);
            wide_row(sp, capped, gi, i, sp->y ? sp->y[i] : -1, sp->loss + i, 0);
            if (gi) uncap_grad(capped, gi, classes, sp->softcap);
            total_sum += sp->loss[i];
        }
        free(capped);
    } else {
        /* the in-place penalty's row of e_j (NULL if it cannot be had: e_j is recomputed) */
        const int copy = sp->kind == PENALTY && g == z && g;
        float *tmp = copy ? malloc((size_t)classes * sizeof(float)) : 0;
        for (int64_t i = lo; i < hi; i++) {
            wide_row(sp, z + i * classes, g ? g + i * classes : 0, i, sp->y ? sp->y[i] : -1,
                     sp->loss + i, tmp);
            total_sum += sp->loss[i];
        }
        free(tmp);
    }
    *total = total_sum;
    return 0;
}

/* Test entry points: the elementwise exp and log above, over n floats. */
void sl_exp_n(const float *x, float *out, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = sl_exp(x[i]);
}

void sl_log_n(const float *x, float *out, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = sl_log(x[i]);
}
