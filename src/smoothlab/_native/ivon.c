/* IVON's per-element kernels for float32 state: Gaussian weight noise and the fused update.
 *
 * Noise. A counter-based generator, Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3", SC 2011), maps a 128-bit counter c under a 64-bit key k to four
 * 32-bit words by ten rounds of
 *
 *     (c0, c1, c2, c3) <- (hi(B c2) ^ c1 ^ k0, lo(B c2), hi(A c0) ^ c3 ^ k1, lo(A c0)),
 *
 * A = 0xD2511F53, B = 0xCD9E8D57, with the key bumped by (0x9E3779B9, 0xBB67AE85) between
 * rounds. Words x become uniforms u = (x >> 8) 2^-24 + 2^-25 in (0, 1), never 0 or 1, and the
 * pairs (u0, u1), (u2, u3) two standard normals each by Box-Muller,
 *
 *     z0 = R cos(2 pi v), z1 = R sin(2 pi v),   R = sqrt(-2 ln u0),   v = u1 - 1/2
 *
 * (z2, z3 likewise from u2, u3).
 *
 * Element j of a stream s (one parameter tensor) under key k lies in chunk q = j / 256 at lane
 * i = j % 64 and word w = (j % 256) / 64: it is z_w of the block with counter
 * (lo32(64 q + i), hi32(64 q + i), s, 0). Streams and blocks never share a counter, the numbers
 * do not depend on how a tensor is split over threads, and the chunk layout keeps every loop
 * unit-stride, so that the generator and Box-Muller vectorise across lanes.
 *
 * Update (Shen et al., ICML 2024, Algorithm 1), with precision P = ess (h + wd):
 *
 *     sample  eps = z, theta = m + eps / sqrt(P)
 *     record  D = h - g eps sqrt(P)  (= h - h_hat), summed over the step's samples;
 *             momentum <- beta1 momentum + share g on the first sample, + share g after it
 *     update  d = (D + missing h) / S;  h <- h + d (c2 d / P - a),  a = 1 - beta2,
 *             c2 = a^2 ess / 2;  m <- m - lr clip((debias momentum + wd m) / (h + wd), r)
 *
 * Arguments. sample, record and update take one ivon_args_t of named fields (mirrored by
 * IvonArgs in smoothlab/optim/_ivon_native.py) and an element range [lo, hi): the pointers
 * address element 0 of one parameter's tensors, so threads share one struct and no caller
 * computes offsets. The normal and Philox entry points keep their few positional arguments.
 *
 * Compiled with -fno-math-errno -fno-trapping-math and without -ffast-math; log, sin and cos
 * are small polynomials below because the libm calls do not vectorise. The Philox words are the
 * same on every machine; the normals differ in the last bit between builds with and without
 * FMA (the polynomials use it where the CPU has it), so runs repeat bitwise on one machine.
 * Outside the polynomials nothing is fused: sample, record and update round every operation
 * as written, which the tests check bit for bit against float32 PyTorch.
 */
#include <math.h>
#include <stdint.h>

/* gcc in -std=c11 mode never contracts a * b + c into an FMA; clang's default would */
#pragma STDC FP_CONTRACT OFF

enum { LANES = 64, CHUNK = 4 * LANES, ROUNDS = 10 };

typedef union { float f; int32_t i; } pun32;

/* a b + c, fused where the CPU has FMA (the polynomials below are latency-bound chains) */
#if defined(__FMA__)
#define MADD(a, b, c) fmaf(a, b, c)
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* One Philox4x32-10 block: the counter words in x[0..3] are replaced by the output words. */
static inline void philox(uint32_t *x0, uint32_t *x1, uint32_t *x2, uint32_t *x3, uint32_t k0,
                          uint32_t k1) {
    uint32_t c0 = *x0, c1 = *x1, c2 = *x2, c3 = *x3;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t pa = (uint64_t)0xD2511F53u * c0, pb = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(pb >> 32) ^ c1 ^ k0, n2 = (uint32_t)(pa >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)pb;
        c3 = (uint32_t)pa;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    *x0 = c0, *x1 = c1, *x2 = c2, *x3 = c3;
}

/* The uniform (x >> 8) 2^-24 + 2^-25, exact in float. */
static inline float unit(uint32_t x) {
    return (float)(int32_t)(x >> 8) * 5.9604644775390625e-08f + 2.98023223876953125e-08f;
}

/* -2 ln(u) for u in (0, 1] (a normal float): u = 2^e f with f in [sqrt(1/2), sqrt(2)), and
 * ln f = 2 atanh(t) = 2 t (1 + t^2/3 + t^4/5 + t^6/7 + t^8/9), t = (f - 1)/(f + 1),
 * |t| < 0.172, so the term left out is below 3e-9 relative. */
static inline float minus_two_log(float u) {
    pun32 b;
    b.f = u;
    int32_t e = ((b.i >> 23) & 0xff) - 127;
    b.i = (b.i & 0x007fffff) | 0x3f800000;
    float f = b.f;
    int over = f > 1.41421356f;
    f = over ? 0.5f * f : f;
    e = over ? e + 1 : e;
    float t = (f - 1.0f) / (f + 1.0f), t2 = t * t;
    float s = MADD(1.0f / 9.0f, t2, 1.0f / 7.0f);
    s = MADD(s, t2, 1.0f / 5.0f);
    s = MADD(s, t2, 1.0f / 3.0f);
    s = MADD(s, t2, 1.0f);
    float ef = (float)e;
    /* ln 2 split so that e * hi is exact */
    return -2.0f * MADD(ef, 0.693145751953125f, MADD(ef, 1.428606765330187045e-06f, 2.0f * t * s));
}

/* sin(2 pi v) and cos(2 pi v) for v in [-1/2, 1/2]: 4 v = q + r with integer q and
 * |r| <= 1/2, x = r pi/2 in [-pi/4, pi/4], Taylor series to x^9 / x^8 (errors below 3e-7 and
 * 3e-8), and the quadrant q rotates (sin x, cos x) by q quarter turns. */
static inline void sincos_turn(float v, float *sin_out, float *cos_out) {
    float w = 4.0f * v;
    float qf = (w + 12582912.0f) - 12582912.0f; /* nearest integer, |w| <= 2 */
    int32_t q = (int32_t)qf & 3;
    float x = (w - qf) * 1.57079632679489662f, x2 = x * x;
    float s = MADD(1.0f / 362880.0f, x2, -1.0f / 5040.0f);
    s = MADD(s, x2, 1.0f / 120.0f);
    s = MADD(s, x2, -1.0f / 6.0f);
    s = MADD(x * x2, s, x);
    float c = MADD(1.0f / 40320.0f, x2, -1.0f / 720.0f);
    c = MADD(c, x2, 1.0f / 24.0f);
    c = MADD(c, x2, -0.5f);
    c = MADD(x2, c, 1.0f);
    /* q = 0: (s, c); 1: (c, -s); 2: (-s, -c); 3: (-c, s) */
    float sn = (q & 1) ? c : s, cs = (q & 1) ? s : c;
    *sin_out = (q == 2 || q == 3) ? -sn : sn;
    *cos_out = (q == 1 || q == 2) ? -cs : cs;
}

/* The Philox words of the LANES blocks of chunk q of stream s: x_w[i] is word w of block
 * 64 q + i. With AVX2 eight blocks go through the rounds at once, two groups interleaved: gcc
 * vectorises the plain loop below too, but builds each 32x32->64 product from 64-bit lanes with
 * lane-crossing shuffles, three times slower than the even/odd _mm256_mul_epu32 pair. */
#if defined(__AVX2__)
#include <immintrin.h>

typedef struct { __m256i c0, c1, c2, c3; } lanes8;

static inline __m256i mulhi8(__m256i a, __m256i m) {
    __m256i even = _mm256_mul_epu32(a, m);                         /* lanes 0, 2, 4, 6 */
    __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);   /* lanes 1, 3, 5, 7 */
    return _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

static inline lanes8 round8(lanes8 s, __m256i k0, __m256i k1) {
    const __m256i ma = _mm256_set1_epi32((int)0xD2511F53u);
    const __m256i mb = _mm256_set1_epi32((int)0xCD9E8D57u);
    lanes8 o;
    o.c0 = _mm256_xor_si256(_mm256_xor_si256(mulhi8(s.c2, mb), s.c1), k0);
    o.c1 = _mm256_mullo_epi32(s.c2, mb);
    o.c2 = _mm256_xor_si256(_mm256_xor_si256(mulhi8(s.c0, ma), s.c3), k1);
    o.c3 = _mm256_mullo_epi32(s.c0, ma);
    return o;
}

static void philox_chunk(uint32_t k0, uint32_t k1, uint32_t stream, int64_t chunk, uint32_t *x0,
                         uint32_t *x1, uint32_t *x2, uint32_t *x3) {
    __m256i key0[ROUNDS], key1[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        key0[r] = _mm256_set1_epi32((int)(k0 + (uint32_t)r * 0x9E3779B9u));
        key1[r] = _mm256_set1_epi32((int)(k1 + (uint32_t)r * 0xBB67AE85u));
    }
    uint64_t base = (uint64_t)chunk * LANES; /* a multiple of 64: no carry inside the chunk */
    const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int i = 0; i < LANES; i += 16) {
        lanes8 a, b;
        a.c0 = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)(base + (uint64_t)i)), step);
        b.c0 = _mm256_add_epi32(a.c0, _mm256_set1_epi32(8));
        a.c1 = b.c1 = _mm256_set1_epi32((int)(uint32_t)((base + (uint64_t)i) >> 32));
        a.c2 = b.c2 = _mm256_set1_epi32((int)stream);
        a.c3 = b.c3 = _mm256_setzero_si256();
        for (int r = 0; r < ROUNDS; r++) {
            a = round8(a, key0[r], key1[r]);
            b = round8(b, key0[r], key1[r]);
        }
        _mm256_storeu_si256((__m256i *)(x0 + i), a.c0);
        _mm256_storeu_si256((__m256i *)(x0 + i + 8), b.c0);
        _mm256_storeu_si256((__m256i *)(x1 + i), a.c1);
        _mm256_storeu_si256((__m256i *)(x1 + i + 8), b.c1);
        _mm256_storeu_si256((__m256i *)(x2 + i), a.c2);
        _mm256_storeu_si256((__m256i *)(x2 + i + 8), b.c2);
        _mm256_storeu_si256((__m256i *)(x3 + i), a.c3);
        _mm256_storeu_si256((__m256i *)(x3 + i + 8), b.c3);
    }
}
#else
static void philox_chunk(uint32_t k0, uint32_t k1, uint32_t stream, int64_t chunk, uint32_t *x0,
                         uint32_t *x1, uint32_t *x2, uint32_t *x3) {
    uint64_t base = (uint64_t)chunk * LANES;
#pragma omp simd
    for (int i = 0; i < LANES; i++) {
        uint64_t block = base + (uint64_t)i;
        uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32), c2 = stream, c3 = 0;
        philox(&c0, &c1, &c2, &c3, k0, k1);
        x0[i] = c0, x1[i] = c1, x2[i] = c2, x3[i] = c3;
    }
}
#endif

/* The CHUNK standard normals of chunk q of stream s, into z. */
static void normal_chunk(uint32_t k0, uint32_t k1, uint32_t stream, int64_t chunk, float *z) {
    uint32_t x0[LANES], x1[LANES], x2[LANES], x3[LANES];
    philox_chunk(k0, k1, stream, chunk, x0, x1, x2, x3);
#pragma omp simd
    for (int i = 0; i < LANES; i++) {
        float ra = sqrtf(minus_two_log(unit(x0[i]))), rb = sqrtf(minus_two_log(unit(x2[i])));
        float sa, ca, sb, cb;
        sincos_turn(unit(x1[i]) - 0.5f, &sa, &ca);
        sincos_turn(unit(x3[i]) - 0.5f, &sb, &cb);
        z[i] = ra * ca;
        z[LANES + i] = ra * sa;
        z[2 * LANES + i] = rb * cb;
        z[3 * LANES + i] = rb * sb;
    }
}

/* Philox4x32-10 words of `blocks` blocks from counter (c0 + b, c1, c2, c3) (carry into c1),
 * four words per block into out: the known-answer test entry point. */
void sl_philox4x32(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                   int64_t blocks, uint32_t *out) {
    uint64_t start = ((uint64_t)c1 << 32) | c0;
    for (int64_t b = 0; b < blocks; b++) {
        uint64_t counter = start + (uint64_t)b;
        uint32_t x0 = (uint32_t)counter, x1 = (uint32_t)(counter >> 32), x2 = c2, x3 = c3;
        philox(&x0, &x1, &x2, &x3, k0, k1);
        out[4 * b] = x0, out[4 * b + 1] = x1, out[4 * b + 2] = x2, out[4 * b + 3] = x3;
    }
}

/* Standard normals of elements [lo, hi) of stream s into out[lo..hi). */
void sl_ivon_normal(uint32_t k0, uint32_t k1, uint32_t stream, int64_t lo, int64_t hi,
                    float *out) {
    float z[CHUNK];
    for (int64_t q = lo / CHUNK; q * CHUNK < hi; q++) {
        normal_chunk(k0, k1, stream, q, z);
        int64_t a = q * CHUNK < lo ? lo : q * CHUNK;
        int64_t b = (q + 1) * CHUNK < hi ? (q + 1) * CHUNK : hi;
        const float *zq = z - q * CHUNK; /* zq[j] is element j's normal */
#pragma omp simd
        for (int64_t j = a; j < b; j++) out[j] = zq[j];
    }
}

/* The arguments of sample, record and update, by name; each reads the fields its comment lists. */
typedef struct {
    uint32_t k0, k1, stream; /* sample: the Philox key and the parameter's stream */
    int32_t first;           /* record: the step's first sample assigns D and decays momentum */
    float *m, *h, *theta, *eps, *g, *mom, *diff; /* mean, Hessian, sample, noise, gradient, ... */
    float ess, ess_wd, wd;   /* precision P = ess h + ess_wd; wd the weight decay (update) */
    float keep, share;       /* record: momentum <- keep momentum + share g */
    float a, c2, missing, samples, lr, debias, clip; /* update, as in the header */
} ivon_args_t;

/* sample: eps = z, theta = m + eps / sqrt(ess h + ess wd), elements [lo, hi).
 * Reads k0, k1, stream, m, h, ess, ess_wd; writes theta, eps. */
void sl_ivon_sample(const ivon_args_t *args, int64_t lo, int64_t hi) {
    const uint32_t k0 = args->k0, k1 = args->k1, stream = args->stream;
    const float *m = args->m, *h = args->h, ess = args->ess, ess_wd = args->ess_wd;
    float *theta = args->theta, *eps = args->eps;
    float z[CHUNK];
    for (int64_t q = lo / CHUNK; q * CHUNK < hi; q++) {
        normal_chunk(k0, k1, stream, q, z);
        int64_t a = q * CHUNK < lo ? lo : q * CHUNK;
        int64_t b = (q + 1) * CHUNK < hi ? (q + 1) * CHUNK : hi;
        const float *zq = z - q * CHUNK;
#pragma omp simd
        for (int64_t j = a; j < b; j++) {
            float e = zq[j];
            eps[j] = e;
            theta[j] = m[j] + e / sqrtf(ess * h[j] + ess_wd);
        }
    }
}

/* record: D (=) h - g eps sqrt(P) and momentum (=) keep momentum + share g; `first` assigns,
 * otherwise D accumulates and keep is unused. Reads g, eps, h, ess, ess_wd, keep, share, first;
 * writes mom, diff. */
void sl_ivon_record(const ivon_args_t *args, int64_t lo, int64_t hi) {
    const int64_t n = hi - lo;
    const float *g = args->g + lo, *eps = args->eps + lo, *h = args->h + lo;
    float *mom = args->mom + lo, *diff = args->diff + lo;
    const float ess = args->ess, ess_wd = args->ess_wd, keep = args->keep, share = args->share;
    if (args->first) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) {
            diff[j] = h[j] - g[j] * eps[j] * sqrtf(ess * h[j] + ess_wd);
            mom[j] = keep * mom[j] + share * g[j];
        }
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) {
            diff[j] += h[j] - g[j] * eps[j] * sqrtf(ess * h[j] + ess_wd);
            mom[j] += share * g[j];
        }
    }
}

/* update: the Hessian with its correction term, then the debiased, clipped mean step. Reads mom,
 * diff, ess, ess_wd, wd, a, c2, missing, samples, lr, debias, clip; updates m and h. */
void sl_ivon_update(const ivon_args_t *args, int64_t lo, int64_t hi) {
    const int64_t n = hi - lo;
    float *m = args->m + lo, *h = args->h + lo;
    const float *mom = args->mom + lo, *diff = args->diff + lo;
    const float ess = args->ess, ess_wd = args->ess_wd, wd = args->wd, a = args->a, c2 = args->c2;
    const float missing = args->missing, samples = args->samples;
    const float lr = args->lr, debias = args->debias, clip = args->clip;
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        float hj = h[j];
        float d = (diff[j] + missing * hj) / samples;
        float hn = hj + d * (c2 * d / (ess * hj + ess_wd) - a);
        float u = (debias * mom[j] + wd * m[j]) / (hn + wd);
        u = u > clip ? clip : u;
        u = u < -clip ? -clip : u;
        h[j] = hn;
        m[j] = m[j] - lr * u;
    }
}
