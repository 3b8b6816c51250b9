/* The row kinds of losses.c beyond the smoothing family (included once, by losses.c, just
 * before sl_rows; the build hashes this header with the source). Same notation as the header
 * of losses.c: m = max z, e_j = exp(k (z_j - m)) (k = 1 except LOGITNORM), S = sum e_j,
 * lse = m + log S, per-row weight w (the kernels' a: w_y, 0 at ignored rows), s = scale.
 *
 * Losses of log p_y alone, lp = z_y - lse, weighted: loss = w f(lp), whose gradient is
 * s w f'(lp) (e_y - p), so ce = -s w f'(lp) / S and ca = -s w f'(lp) in losses.c's terms:
 *   FOCAL  f = -(1 - p_y)^gamma lp, gamma = param where p_y < tau, else strength (focal loss:
 *          tau = 0; FLSD: tau = threshold, param = gamma below it); 1 - p_y = -expm1(lp)
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

/* f(lp) and f'(lp) of the kinds FOCAL, GCE and SCE. */
static inline void py_loss(const spec_t *sp, float lp, float *f, float *d) {
    if (sp->kind == GCE) {
        const float q = sp->strength;
        *f = -expm1f(q * lp) / q;
        *d = -expf(q * lp);
    } else if (sp->kind == SCE) {
        *f = -sp->strength * lp - sp->param * expm1f(lp);
        *d = -sp->strength - sp->param * expf(lp);
    } else {
        const float p = expf(lp), base = -expm1f(lp);
        const float gamma = p < sp->tau ? sp->param : sp->strength;
        const float pw = powf(base, gamma);
        /* d/dlp (1 - p)^gamma = -gamma (1 - p)^(gamma - 1) p; exactly 0 for gamma = 0 (as
         * torch.pow's gradient), where powf(0, -1) would make 0 * inf */
        const float slope = gamma == 0.0f ? 0.0f : gamma * powf(base, gamma - 1.0f) * p;
        *f = -pw * lp;
        *d = -pw + slope * lp;
    }
}

/* The coefficients of FOCAL, GCE and SCE rows (a row of weight 0 contributes exactly 0). */
static void py_math(const spec_t *sp, int64_t n, lanes_t L) {
    const float *w = L.a;
    for (int64_t l = 0; l < n; l++) {
        float f, d;
        py_loss(sp, L.zy[l] - (L.m[l] + sl_log(L.s[l])), &f, &d);
        const float c = w[l] != 0.0f ? sp->scale * w[l] * d : 0.0f;
        L.loss[l] = w[l] != 0.0f ? w[l] * f : 0.0f;
        L.ce[l] = -c / L.s[l];
        L.cez[l] = L.cb[l] = 0.0f;
        L.ca[l] = -c;
    }
}

/* Statistics and coefficients of LOGIT rows, n lanes at once. */
typedef struct {
    float *m, *zz, *zsum, *s, *ez, *cnt, *act, *hinge, *zy, *k; /* statistics (zz = sum z^2) */
    float *loss, *ce, *cz, *cb, *cm, *cact, *ca;               /* the loss and the gradient */
} logit_t;

static void logit_math(const spec_t *sp, int64_t n, const float *w, logit_t T) {
    const float strength = sp->strength, C = (float)sp->classes;
    for (int64_t l = 0; l < n; l++) {
        const float k = T.k[l], lse = k * T.m[l] + sl_log(T.s[l]), sw = sp->scale * w[l];
        float extra = 0.0f;
        T.cz[l] = T.cb[l] = T.cm[l] = T.cact[l] = 0.0f;
        if (sp->kind == LPEN) {
            extra = 0.5f * strength * T.zz[l];
            T.cz[l] = sw * strength;
        } else if (sp->kind == MAXSUP) {
            extra = strength * (T.m[l] - T.zsum[l] / C);
            T.cb[l] = sw * strength / C;
            T.cm[l] = sw * strength / T.cnt[l];
        } else if (sp->kind == MBLS) {
            extra = strength * T.hinge[l];
            T.cm[l] = sw * strength * T.act[l] / T.cnt[l];
            T.cact[l] = sw * strength;
        } else {
            const float norm = sqrtf(T.zz[l]), dot = T.ez[l] / T.s[l] - T.zy[l];
            T.cz[l] = norm > 0.0f ? -sw * k * dot / (norm * (norm + sp->param)) : 0.0f;
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

/* One LOGIT row of many classes: a sweep for m, sum z^2 and sum z, a sweep for S and the
 * kind's counts, then (with g) a sweep writing g, e_j recomputed there so that g may be z. */
static void logit_row(const spec_t *sp, const float *z, float *g, int64_t i, int64_t y,
                      float *loss) {
    const int64_t C = sp->classes;
    const float margin = sp->param;
    float m = z[0], w = sp->a ? sp->a[i] : sp->a0, zy = z[y];
    int nan = 0;
    double zz = 0.0, zsum = 0.0, s = 0.0, ez = 0.0, cnt = 0.0, act = 0.0, hinge = 0.0;
    for (int64_t j0 = 0; j0 < C; j0 += BLOCK) {
        const int64_t j1 = C - j0 < BLOCK ? C : j0 + BLOCK;
        float bzz = 0.0f, bsum = 0.0f;
#pragma omp simd reduction(max : m) reduction(| : nan) reduction(+ : bzz, bsum)
        for (int64_t j = j0; j < j1; j++) {
            m = z[j] > m ? z[j] : m;
            nan |= z[j] != z[j];
            bzz += z[j] * z[j];
            bsum += z[j];
        }
        zz += bzz;
        zsum += bsum;
    }
    m = nan ? NAN : m;
    float k = logit_scale(sp, (float)zz);
    for (int64_t j0 = 0; j0 < C; j0 += BLOCK) {
        const int64_t j1 = C - j0 < BLOCK ? C : j0 + BLOCK;
        float bs = 0.0f, bez = 0.0f, bcnt = 0.0f, bact = 0.0f, bhinge = 0.0f;
#pragma omp simd reduction(+ : bs, bez, bcnt, bact, bhinge)
        for (int64_t j = j0; j < j1; j++) {
            const float e = sl_exp(k * (z[j] - m)), gap = (m - z[j]) - margin;
            bs += e;
            bez += e * z[j];
            bcnt += z[j] == m ? 1.0f : 0.0f;
            bact += gap > 0.0f ? 1.0f : 0.0f;
            bhinge += gap > 0.0f ? gap : 0.0f;
        }
        s += bs;
        ez += bez;
        cnt += bcnt;
        act += bact;
        hinge += bhinge;
    }
    float fzz = (float)zz, fsum = (float)zsum, fs = (float)s, fez = (float)ez, fcnt = (float)cnt;
    float fact = (float)act, fhinge = (float)hinge, ce, cz, cb, cm, cact, ca;
    logit_t T = {&m, &fzz, &fsum, &fs, &fez, &fcnt, &fact, &fhinge, &zy, &k,
                 loss, &ce, &cz, &cb, &cm, &cact, &ca};
    logit_math(sp, 1, &w, T);
    if (sp->valid && !sp->valid[i]) *loss = 0.0f;
    if (!sp->grad || g == 0) return;
#pragma omp simd
    for (int64_t j = 0; j < C; j++) {
        const float zj = z[j], gap = (m - zj) - margin;
        float gj = MADD(ce, sl_exp(k * (zj - m)), MADD(cz, zj, -cb));
        gj += zj == m ? cm : 0.0f;
        g[j] = gj - (gap > 0.0f ? cact : 0.0f);
    }
    g[y] -= ca;
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
    logit_math(sp, n, w, T);
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
            logit_row(sp, sp->z + i * C, g ? g + i * C : 0, i, sp->y[i], sp->loss + i);
            total += sp->loss[i++];
        }
    }
    return total;
}
