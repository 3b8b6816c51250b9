/* The row kinds of losses.c beyond the smoothing family (included once, by losses.c, just
 * before sl_rows; the build hashes this header with the source). Same notation as the header
 * of losses.c: m = max z, e_j = exp(k (z_j - m)) (k = 1 except LOGITNORM), S = sum e_j,
 * lse = m + log S, per-row weight w (the kernels' a: w_y, 0 at ignored rows), s = scale.
 *
 * Losses of log p_y alone, lp = z_y - lse, weighted: loss = w f(lp), whose gradient is
 * s w f'(lp) (e_y - p), so ce = -s w f'(lp) / S and ca = -s w f'(lp) in losses.c's terms:
 *   FOCAL  f = -(1 - p_y)^gamma lp, gamma = param where p_y < tau, else strength (focal loss:
 *          tau = 0; FLSD: tau = threshold, param = gamma below it); 1 - p_y = -expm1(lp),
 *          (1 - p_y)^gamma = exp(gamma log(1 - p_y))
 *   GCE    f = -expm1(q lp) / q, q = strength                          (Zhang & Sabuncu)
 *   SCE    f = -alpha lp + c (1 - p_y), alpha = strength, c = param = -beta log_zero (Wang)
 *
 * Cross-entropy plus a function of the logits (LOGIT kinds), weighted: loss = w (lse - z_y +
 * R(z)); their gradient is
 *   g_j = ce e_j + cz z_j - cb + cm [z_j = m] - cact [(m - z_j) - margin > 0],  g_y -= ca
 *   LPEN       R = beta/2 sum z_j^2 (beta = strength)           (Dauphin & Cubuk)
 *   MAXSUP     R = alpha (m - mean z) (alpha = strength); the max's gradient is split evenly
 *              over tied maxima, as torch.amax's is                   (Zhou et al.)
 *   MBLS       R = alpha sum_j relu((m - z_j) - margin) (alpha = strength, margin = param);
 *              relu' (0) = 0 as in PyTorch                           (Liu et al.)
 *   LOGITNORM  the cross-entropy of u = k z, k = 1 / (tau (|z| + eps)) (tau = strength,
 *              eps = param), R = 0: dloss/dz = k G - k z (G . z) / (|z| (|z| + eps)) with
 *              G = w (p - e_y), G . z = w (ez / S - z_y), ez = sum e_j z_j; the second term
 *              is 0 at z = 0, as PyTorch's norm gradient                 (Wei et al.)
 * The LOGIT kinds take finite logits (as their compositions document); zloss and softcap
 * belong to the smoothing family's kinds only.
 */

enum { FOCAL = 3, GCE = 4, SCE = 5, LPEN = 6, MAXSUP = 7, MBLS = 8, LOGITNORM = 9 };

/* exp(x) - 1 for x <= 0, accurate near 0: Kahan's (u - 1) x / log u with u = exp(x), which
 * cancels the rounding of u itself (Higham, Accuracy and Stability, 1.14.1). */
static inline float sl_expm1(float x) {
    const float u = sl_exp(x), um1 = u - 1.0f;
    return u == 1.0f ? x : um1 == -1.0f ? -1.0f : um1 * x / sl_log(u);
}

/* base^e for base >= 0, with 0^0 = 1 (torch.pow) and 0^e = 0 (e > 0) or inf (e < 0). */
static inline float sl_pow(float base, float e) {
    const float zero = e > 0.0f ? 0.0f : e == 0.0f ? 1.0f : INFINITY;
    return base == 0.0f ? zero : e == 0.0f ? 1.0f : sl_exp(e * sl_log(base));
}

/* f(lp) and f'(lp) of the kinds FOCAL, GCE and SCE (hyperparameters as in the header), with
 * the kernels' exp and log, so that the rows' arithmetic vectorises (libm's powf and expm1f
 * would be called once per row). */
SL_INLINE void py_loss(const int kind, float lp, float strength, float tau, float param,
                       float *f, float *d) {
    if (kind == GCE) {
        *f = -sl_expm1(strength * lp) / strength;
        *d = -sl_exp(strength * lp);
    } else if (kind == SCE) {
        *f = -strength * lp - param * sl_expm1(lp);
        *d = -strength - param * sl_exp(lp);
    } else {
        const float p = sl_exp(lp), base = -sl_expm1(lp);
        const float gamma = p < tau ? param : strength;
        const float pw = sl_pow(base, gamma);
        /* d/dlp (1 - p)^gamma = -gamma (1 - p)^(gamma - 1) p; exactly 0 for gamma = 0 (as
         * torch.pow's gradient), where 0^-1 would make 0 * inf */
        const float slope = gamma == 0.0f ? 0.0f : gamma * sl_pow(base, gamma - 1.0f) * p;
        *f = -pw * lp;
        *d = -pw + slope * lp;
    }
}

/* The coefficients of n rows of one of the kinds FOCAL, GCE and SCE (a row of weight 0
 * contributes exactly 0). */
SL_INLINE void py_kind(const spec_t *sp, int64_t n, lanes_t L, const int kind) {
    const float *w = L.a, scale = sp->scale, strength = sp->strength, tau = sp->tau;
    const float param = sp->param;
#pragma omp simd
    for (int64_t l = 0; l < n; l++) {
        float f, d;
        py_loss(kind, L.zy[l] - (L.m[l] + sl_log(L.s[l])), strength, tau, param, &f, &d);
        const float c = w[l] != 0.0f ? scale * w[l] * d : 0.0f;
        L.loss[l] = w[l] != 0.0f ? w[l] * f : 0.0f;
        L.ce[l] = -c / L.s[l];
        L.cez[l] = L.cb[l] = 0.0f;
        L.ca[l] = -c;
    }
}

static void py_math(const spec_t *sp, int64_t n, lanes_t L) {
    if (sp->kind == GCE) py_kind(sp, n, L, GCE);
    else if (sp->kind == SCE) py_kind(sp, n, L, SCE);
    else py_kind(sp, n, L, FOCAL);
}

/* Statistics and coefficients of LOGIT rows, n lanes at once. */
typedef struct {
    float *m, *zz, *zsum, *s, *ez, *cnt, *act, *hinge, *zy, *k; /* statistics (zz = sum z^2) */
    float *loss, *ce, *cz, *cb, *cm, *cact, *ca;               /* the loss and the gradient */
} logit_t;

SL_INLINE void logit_math(const spec_t *sp, int64_t n, const float *w, logit_t T,
                          const int kind) {
    const float strength = sp->strength, C = (float)sp->classes, scale = sp->scale;
    const float eps = sp->param;
#pragma omp simd
    for (int64_t l = 0; l < n; l++) {
        const float k = T.k[l], lse = k * T.m[l] + sl_log(T.s[l]), sw = scale * w[l];
        float extra = 0.0f;
        T.cz[l] = T.cb[l] = T.cm[l] = T.cact[l] = 0.0f;
        if (kind == LPEN) {
            extra = 0.5f * strength * T.zz[l];
            T.cz[l] = sw * strength;
        } else if (kind == MAXSUP) {
            extra = strength * (T.m[l] - T.zsum[l] / C);
            T.cb[l] = sw * strength / C;
            T.cm[l] = sw * strength / T.cnt[l];
        } else if (kind == MBLS) {
            extra = strength * T.hinge[l];
            T.cm[l] = sw * strength * T.act[l] / T.cnt[l];
            T.cact[l] = sw * strength;
        } else {
            const float norm = sqrtf(T.zz[l]), dot = T.ez[l] / T.s[l] - T.zy[l];
            T.cz[l] = norm > 0.0f ? -sw * k * dot / (norm * (norm + eps)) : 0.0f;
        }
        T.loss[l] = w[l] != 0.0f ? w[l] * (lse - k * T.zy[l] + extra) : 0.0f;
        T.ce[l] = sw * k / T.s[l];
        T.ca[l] = sw * k;
        if (w[l] == 0.0f) T.ce[l] = T.cz[l] = T.cb[l] = T.cm[l] = T.cact[l] = T.ca[l] = 0.0f;
    }
}

/* The exp scale k of a row: 1 / (tau (|z| + eps)) for LOGITNORM, else 1. */
static inline float logit_scale(const spec_t *sp, float zz) {
    return sp->kind == LOGITNORM ? 1.0f / (sp->strength * (sqrtf(zz) + sp->param)) : 1.0f;
}

/* The first sweep of a LOGIT row: m (NaN if any logit is), and sum z^2 and sum z where the
 * kind needs them, summed in float per BLOCK and in double across blocks. */
SL_INLINE float logit_first(const float *z, int64_t C, float *zz, float *zsum, const int kind) {
    const int squares = kind == LPEN || kind == LOGITNORM, sums = kind == MAXSUP;
    float m = z[0];
    int nan = 0;
    double zz_sum = 0.0, z_sum = 0.0;
    for (int64_t j0 = 0; j0 < C; j0 += BLOCK) {
        const int64_t j1 = C - j0 < BLOCK ? C : j0 + BLOCK;
        float bzz = 0.0f, bsum = 0.0f;
#pragma omp simd reduction(max : m) reduction(| : nan) reduction(+ : bzz, bsum)
        for (int64_t j = j0; j < j1; j++) {
            m = z[j] > m ? z[j] : m;
            nan |= z[j] != z[j];
            bzz += squares ? z[j] * z[j] : 0.0f;
            bsum += sums ? z[j] : 0.0f;
        }
        zz_sum += bzz;
        z_sum += bsum;
    }
    *zz = (float)zz_sum;
    *zsum = (float)z_sum;
    return nan ? NAN : m;
}

/* The second sweep: S, and ez, the tied maxima and MbLS's active gaps where the kind needs
 * them (out[5] = {S, ez, cnt, act, hinge}); e_j into store with keep (a constant, so that
 * each copy's loop has no branch). */
SL_INLINE void logit_second(const float *z, int64_t C, float m, float k, float margin,
                            float *store, float out[5], const int kind, const int keep) {
    const int ties = kind == MAXSUP || kind == MBLS;
    double sum[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
    for (int64_t j0 = 0; j0 < C; j0 += BLOCK) {
        const int64_t j1 = C - j0 < BLOCK ? C : j0 + BLOCK;
        float bs = 0.0f, bez = 0.0f, bcnt = 0.0f, bact = 0.0f, bhinge = 0.0f;
#pragma omp simd reduction(+ : bs, bez, bcnt, bact, bhinge)
        for (int64_t j = j0; j < j1; j++) {
            const float e = sl_exp(k * (z[j] - m)), gap = (m - z[j]) - margin;
            if (keep) store[j] = e;
            bs += e;
            bez += kind == LOGITNORM ? e * z[j] : 0.0f;
            bcnt += ties && z[j] == m ? 1.0f : 0.0f;
            bact += kind == MBLS && gap > 0.0f ? 1.0f : 0.0f;
            bhinge += kind == MBLS && gap > 0.0f ? gap : 0.0f;
        }
        sum[0] += bs;
        sum[1] += bez;
        sum[2] += bcnt;
        sum[3] += bact;
        sum[4] += bhinge;
    }
    for (int q = 0; q < 5; q++) out[q] = (float)sum[q];
}

/* The gradient sweep of a LOGIT row but for g_y's ca (c = {ce, cz, cb, cm, cact}), from the
 * e_j stored in g or recomputed: two loops, since a select between the two would be if-converted
 * into computing exp for every entry anyway. */
SL_INLINE void logit_grad(const float *z, float *g, int64_t C, float m, float k, float margin,
                          const float c[5], const int kind, const int stored) {
    const float ce = c[0], cz = c[1], cb = c[2], cm = c[3], cact = c[4];
#pragma omp simd
    for (int64_t j = 0; j < C; j++) {
        const float zj = z[j], e = stored ? g[j] : sl_exp(k * (zj - m));
        float gj = kind == LPEN || kind == LOGITNORM ? MADD(ce, e, cz * zj) : ce * e - cb;
        if (kind == MAXSUP || kind == MBLS) gj += zj == m ? cm : 0.0f;
        if (kind == MBLS) gj -= (m - zj) - margin > 0.0f ? cact : 0.0f;
        g[j] = gj;
    }
}

/* One LOGIT row of many classes: the two sweeps above, the row's coefficients, then (with g)
 * a sweep writing g, from the e_j stored in g, or recomputed when g is z (in place). */
SL_INLINE void logit_row(const spec_t *sp, const float *z, float *g, int64_t i, int64_t y,
                         float *loss, const int kind) {
    const int64_t C = sp->classes;
    const float margin = kind == MBLS ? sp->param : 0.0f;
    float w = sp->a ? sp->a[i] : sp->a0, zy = z[y], zz, zsum, st[5];
    float m = logit_first(z, C, &zz, &zsum, kind), k = logit_scale(sp, zz);
    const int store = g != 0 && g != z && sp->grad;
    if (store) logit_second(z, C, m, k, margin, g, st, kind, 1);
    else logit_second(z, C, m, k, margin, 0, st, kind, 0);
    float ce, cz, cb, cm, cact, ca;
    logit_t T = {&m, &zz, &zsum, &st[0], &st[1], &st[2], &st[3], &st[4], &zy, &k,
                 loss, &ce, &cz, &cb, &cm, &cact, &ca};
    logit_math(sp, 1, &w, T, kind);
    if (sp->valid && !sp->valid[i]) *loss = 0.0f;
    if (!sp->grad || g == 0) return;
    const float c[5] = {ce, cz, cb, cm, cact};
    if (store) logit_grad(z, g, C, m, k, margin, c, kind, 1);
    else logit_grad(z, g, C, m, k, margin, c, kind, 0);
    g[y] -= ca;
}

static void wide_logit(const spec_t *sp, const float *z, float *g, int64_t i, int64_t y,
                       float *loss) {
    if (sp->kind == LPEN) logit_row(sp, z, g, i, y, loss, LPEN);
    else if (sp->kind == MAXSUP) logit_row(sp, z, g, i, y, loss, MAXSUP);
    else if (sp->kind == MBLS) logit_row(sp, z, g, i, y, loss, MBLS);
    else logit_row(sp, z, g, i, y, loss, LOGITNORM);
}

/* LANES rows of few classes (transposed as narrow_kind's); one copy per kind, so that each
 * sweep computes only what its kind needs. */
SL_INLINE double narrow_logit_kind(const spec_t *sp, const float *z, float *g, int64_t row0,
                                   int64_t n, const int64_t *y, float *loss, const int kind) {
    const int64_t C = sp->classes;
    const float margin = sp->param;
    float zt[SMALL_C * LANES], et[SMALL_C * LANES], w[LANES];
    float m[LANES], zz[LANES], zsum[LANES], s[LANES], ez[LANES], cnt[LANES], act[LANES];
    float hinge[LANES], zy[LANES], k[LANES], ce[LANES], cz[LANES], cb[LANES], cm[LANES];
    float cact[LANES], ca[LANES];
    to_lanes(z, zt, n, C);
    for (int64_t l = 0; l < LANES; l++) w[l] = sp->a && l < n ? sp->a[row0 + l] : sp->a0;
#pragma omp simd
    for (int64_t l = 0; l < LANES; l++) {
        m[l] = zt[l];
        zz[l] = zsum[l] = s[l] = ez[l] = cnt[l] = act[l] = hinge[l] = 0.0f;
    }
    for (int64_t j = 0; j < C; j++) {
        const float *zj = zt + j * LANES;
#pragma omp simd
        for (int64_t l = 0; l < LANES; l++) {
            m[l] = zj[l] > m[l] || zj[l] != zj[l] ? zj[l] : m[l]; /* a NaN sticks */
            zz[l] += kind == LPEN || kind == LOGITNORM ? zj[l] * zj[l] : 0.0f;
            zsum[l] += kind == MAXSUP ? zj[l] : 0.0f;
        }
    }
    for (int64_t l = 0; l < LANES; l++) k[l] = logit_scale(sp, zz[l]);
    for (int64_t j = 0; j < C; j++) {
        const float *zj = zt + j * LANES;
        float *ej = et + j * LANES;
#pragma omp simd
        for (int64_t l = 0; l < LANES; l++) {
            const float e = sl_exp(k[l] * (zj[l] - m[l])), gap = (m[l] - zj[l]) - margin;
            ej[l] = e;
            s[l] += e;
            if (kind == LOGITNORM) ez[l] += e * zj[l];
            if (kind == MAXSUP || kind == MBLS) cnt[l] += zj[l] == m[l] ? 1.0f : 0.0f;
            if (kind == MBLS) {
                act[l] += gap > 0.0f ? 1.0f : 0.0f;
                hinge[l] += gap > 0.0f ? gap : 0.0f;
            }
        }
    }
    for (int64_t l = 0; l < n; l++) zy[l] = zt[y[l] * LANES + l];
    logit_t T = {m, zz, zsum, s, ez, cnt, act, hinge, zy, k, loss, ce, cz, cb, cm, cact, ca};
    logit_math(sp, n, w, T, kind);
    if (sp->valid)
        for (int64_t l = 0; l < n; l++) loss[l] = sp->valid[row0 + l] ? loss[l] : 0.0f;
    double total = 0.0;
    for (int64_t l = 0; l < n; l++) total += loss[l];
    if (!sp->grad || g == 0) return total;
    for (int64_t j = 0; j < C; j++) {
        const float *zj = zt + j * LANES;
        float *ej = et + j * LANES;
#pragma omp simd
        for (int64_t l = 0; l < LANES; l++) {
            float gj = MADD(ce[l], ej[l], MADD(cz[l], zj[l], -cb[l]));
            if (kind == MAXSUP || kind == MBLS) gj += zj[l] == m[l] ? cm[l] : 0.0f;
            if (kind == MBLS) gj -= (m[l] - zj[l]) - margin > 0.0f ? cact[l] : 0.0f;
            ej[l] = gj;
        }
    }
    for (int64_t l = 0; l < n; l++) et[y[l] * LANES + l] -= ca[l];
    from_lanes(et, g, n, C);
    return total;
}

static double narrow_logit(const spec_t *sp, const float *z, float *g, int64_t row0, int64_t n,
                           const int64_t *y, float *loss) {
    if (sp->kind == LPEN) return narrow_logit_kind(sp, z, g, row0, n, y, loss, LPEN);
    if (sp->kind == MAXSUP) return narrow_logit_kind(sp, z, g, row0, n, y, loss, MAXSUP);
    if (sp->kind == MBLS) return narrow_logit_kind(sp, z, g, row0, n, y, loss, MBLS);
    return narrow_logit_kind(sp, z, g, row0, n, y, loss, LOGITNORM);
}

/* sl_rows for the LOGIT kinds (class indices only: sp->y is never NULL for them). */
static double logit_rows(const spec_t *sp, int64_t lo, int64_t hi) {
    const int64_t C = sp->classes;
    float *g = sp->grad ? sp->g : 0;
    double total = 0.0;
    for (int64_t i = lo; i < hi;) {
        if (C <= SMALL_C) {
            const int64_t n = hi - i < LANES ? hi - i : LANES;
            total += narrow_logit(sp, sp->z + i * C, g ? g + i * C : 0, i, n, sp->y + i,
                                  sp->loss + i);
            i += n;
        } else {
            wide_logit(sp, sp->z + i * C, g ? g + i * C : 0, i, sp->y[i], sp->loss + i);
            total += sp->loss[i++];
        }
    }
    return total;
}
