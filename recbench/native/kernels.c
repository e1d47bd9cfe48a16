/* recbench's native kernels: the element-wise passes of NGCF's hand-written BPR step fused
   into one loop each, the BPR and L2 row gradients scattered without gathers, and a CSR
   product with a dense matrix. float32, row-major; compiled and loaded by recbench/native/build.py,
   called through recbench/native/ops.py (which says why each exists).
   Threads (OpenMP, `threads` = torch's thread count, passed by ops.py): every parallel loop
   writes each output element from exactly one thread and sums in the same order as the serial
   loop, so the floats are the same at any thread count. The BPR / L2 scatters stay serial
   (two triples can hit one row; they prefetch the rows ahead instead). Small calls stay on
   one thread (PAR_MIN elements). */
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define PAR_MIN 32768 /* below this many elements a second thread costs more than it saves */
#define PAR_IF(n, threads) num_threads((n) >= PAR_MIN ? (threads) : 1)

/* this thread's number and the team's size inside a parallel region (0 of 1 when serial) */
static inline void thread_slot(int *t, int *n) {
#ifdef _OPENMP
    *t = omp_get_thread_num();
    *n = omp_get_num_threads();
#else
    *t = 0;
    *n = 1;
#endif
}

/* a . b with 8 partial sums, so the compiler can vectorise the reduction */
static inline float dot(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[k + j] * b[k + j];
    float s = 0.f;
    for (; k < n; k++) s += a[k] * b[k];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

/* x1 = side + h, x2 = side * h */
void ngcf_mix(const float *side, const float *h, float *x1, float *x2, int64_t count,
              int threads) {
#pragma omp parallel for simd schedule(static) PAR_IF(count, threads)
    for (int64_t i = 0; i < count; i++) {
        float s = side[i], v = h[i];
        x1[i] = s + v;
        x2[i] = s * v;
    }
}

/* out = leaky_relu(pre) [* mask / keep]; norm[r] = |out_r|; normed (row stride ld) = out / max(norm, 1e-12) */
void ngcf_activate(const float *pre, const float *mask, float keep, float slope, float *out,
                   float *norm, float *normed, int64_t ld, int64_t rows, int64_t dim,
                   int threads) {
#pragma omp parallel for schedule(static) PAR_IF(rows * dim, threads)
    for (int64_t r = 0; r < rows; r++) {
        const float *p = pre + r * dim;
        float *o = out + r * dim;
        for (int64_t k = 0; k < dim; k++) {
            float a = p[k] > 0 ? p[k] : p[k] * slope;
            if (mask) a *= mask[r * dim + k] / keep;
            o[k] = a;
        }
        float nrm = sqrtf(dot(o, o, dim));
        norm[r] = nrm;
        float div = nrm > 1e-12f ? nrm : 1e-12f;
        float *w = normed + r * ld;
        for (int64_t k = 0; k < dim; k++) w[k] = o[k] / div;
    }
}

/* grad_pre = leaky_relu'(pre) * [mask/keep] * ((gy - y * <y, gy>) / max(norm, eps) + grad_h);
   gy, y: row stride ld; bias_grad = column sums of grad_pre (a second, serial pass in row
   order: the same sums at any thread count) */
void ngcf_activate_back(const float *gy, const float *y, int64_t ld, const float *norm,
                        const float *grad_h, const float *mask, float keep, const float *pre,
                        float slope, float *grad_pre, float *bias_grad, int64_t rows,
                        int64_t dim, int threads) {
#pragma omp parallel for schedule(static) PAR_IF(rows * dim, threads)
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gy + r * ld, *yy = y + r * ld;
        float radial = dot(yy, g, dim);
        float nrm = norm[r];
        if (!(nrm > 1e-12f)) radial = 0.f;
        float inv = 1.f / (nrm > 1e-12f ? nrm : 1e-12f);
        for (int64_t k = 0; k < dim; k++) {
            int64_t i = r * dim + k;
            float v = (g[k] - yy[k] * radial) * inv;
            if (grad_h) v += grad_h[i];
            if (mask) v *= mask[i] / keep;
            v = pre[i] > 0 ? v : v * slope;
            grad_pre[i] = v;
        }
    }
    for (int64_t k = 0; k < dim; k++) bias_grad[k] = 0.f;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < dim; k++) bias_grad[k] += grad_pre[r * dim + k];
}

/* a = g1 + g2 * h, b = g1 + g2 * side */
void ngcf_mix_back(const float *g1, const float *g2, const float *h, const float *side, float *a,
                   float *b, int64_t count, int threads) {
#pragma omp parallel for simd schedule(static) PAR_IF(count, threads)
    for (int64_t i = 0; i < count; i++) {
        a[i] = g1[i] + g2[i] * h[i];
        b[i] = g1[i] + g2[i] * side[i];
    }
}

/* request a row's cache lines ahead of its use (read, or read for a write); no value changes */
static inline void prefetch_row(const float *row, int64_t dim) {
    for (int64_t k = 0; k < dim; k += 16) __builtin_prefetch(row + k);
    __builtin_prefetch(row + dim - 1);
}
static inline void prefetch_row_w(float *row, int64_t dim) {
    for (int64_t k = 0; k < dim; k += 16) __builtin_prefetch(row + k, 1);
    __builtin_prefetch(row + dim - 1, 1);
}

/* the serial scatters request the rows of the triple ROWS_AHEAD on: each row is a random
   line of a table far beyond the caches at Gowalla size, and the loop otherwise waits on
   each in turn (issue 36) */
#ifndef ROWS_AHEAD
#define ROWS_AHEAD 8
#endif

/* One BPR triple's share of the mean loss, x = u.(p - n): adds softplus(-x) to *loss and
   returns dL/dx = -sigmoid(-x) / B (scale = -1 / B) */
static inline float bpr_slope(const float *eu, const float *ep, const float *en, int64_t dim,
                              float scale, double *loss) {
    float x = dot(eu, ep, dim) - dot(eu, en, dim);
    float m = -x;
    *loss += m > 20.f ? m : log1pf(expf(m));
    return (1.f / (1.f + expf(x))) * scale;
}

/* grad[idx] += alpha * table[idx] for the u and p rows (`batch` each), then the n rows
   (`negatives`: batch x k with k negatives a positive, row-major); returns the sum of squares
   of those rows / 2 */
double l2_scatter(const float *table, const int64_t *u, const int64_t *p, const int64_t *n,
                  int64_t batch, int64_t negatives, int64_t dim, float alpha, float *grad) {
    double sq = 0.0;
    const int64_t *lists[3] = {u, p, n};
    for (int l = 0; l < 3; l++) {
        const int64_t count = l == 2 ? negatives : batch;
        for (int64_t b = 0; b < count; b++) {
            if (b + ROWS_AHEAD < count) {
                prefetch_row(table + lists[l][b + ROWS_AHEAD] * dim, dim);
                prefetch_row_w(grad + lists[l][b + ROWS_AHEAD] * dim, dim);
            }
            const float *e = table + lists[l][b] * dim;
            float *g = grad + lists[l][b] * dim;
            sq += dot(e, e, dim);
#pragma GCC ivdep
            for (int64_t k = 0; k < dim; k++) g[k] += alpha * e[k];
        }
    }
    return sq / 2;
}

/* What a product does with output row r once its sum `acc` is complete (csr_spmm_fused):
   SPMM_STORE      out[r] = acc
   SPMM_ACCUMULATE out[r] = out[r] + acc (the sum starts from out[r], entry order after it)
   SPMM_ADD_SCALED out[r] = acc + alpha * other[r]   (the product rounded, then the sum: what
                   torch's `spmm + alpha * t` computes; LightGCN's backward layer)
   Why: in LightGCN's backward each layer was the product, then `alpha * G` and the sum, two
   more passes over an 18 MB table and three fresh ones at Gowalla size; here the row is still
   in registers. Same floats. (The forward's `out.add_(h, alpha)` fused the same way, an
   fmaf per element, measured slower than torch's separate add_ pass: left to torch.) */
enum { SPMM_STORE = 0, SPMM_ACCUMULATE = 1, SPMM_ADD_SCALED = 2 };

/* the X row of entry j + PREFETCH_AHEAD is requested while entry j is summed: the rows are
   gathered in column order, ~70k rows x 256 B at Gowalla size, far beyond the caches, and the
   hardware prefetcher cannot guess them (16 chosen by measurement on the Gowalla CSR: 8, 24
   and 32 slower; issue 36). A prefetch changes no value. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 16
#endif

/* out[r] (+)= sum over j in row r of weight[j] * x[col[j]]: a CSR product with a dense (., D)
   matrix, one output row at a time, its accumulator D / 16 vector registers (GCC's vector
   extension: AVX-512, AVX or SSE, whatever the compiler targets); rows [lo, hi), then `mode`
   (above) with the finished row */
typedef float vec16 __attribute__((vector_size(64), aligned(4)));
#define CSR_SPMM(V)                                                                            \
    static void csr_spmm_##V(const int64_t *indptr, const int64_t *col, const float *weight,  \
                             const float *x, float *out, int64_t lo, int64_t hi, int mode,    \
                             const float *other, float alpha) {                               \
        const int64_t end = indptr[hi]; /* prefetch only entries of this block: tail-safe */  \
        for (int64_t r = lo; r < hi; r++) {                                                   \
            vec16 acc[V];                                                                     \
            vec16 *o = (vec16 *)(out + r * 16 * V);                                           \
            for (int v = 0; v < V; v++)                                                       \
                acc[v] = mode == SPMM_ACCUMULATE ? o[v] : (vec16){0};                         \
            for (int64_t j = indptr[r]; j < indptr[r + 1]; j++) {                             \
                if (j + PREFETCH_AHEAD < end) {                                               \
                    const char *ahead = (const char *)(x + col[j + PREFETCH_AHEAD] * 16 * V); \
                    for (int v = 0; v < V; v++) __builtin_prefetch(ahead + 64 * v);           \
                }                                                                             \
                const vec16 *xr = (const vec16 *)(x + col[j] * 16 * V);                       \
                float w = weight[j];                                                          \
                for (int v = 0; v < V; v++) acc[v] += w * xr[v];                              \
            }                                                                                 \
            if (mode == SPMM_ADD_SCALED) {                                                    \
                const vec16 *g = (const vec16 *)(other + r * 16 * V);                         \
                for (int v = 0; v < V; v++) o[v] = acc[v] + alpha * g[v];                     \
            } else {                                                                          \
                for (int v = 0; v < V; v++) o[v] = acc[v];                                    \
            }                                                                                 \
        }                                                                                     \
    }
CSR_SPMM(1)
CSR_SPMM(2)
CSR_SPMM(4)
CSR_SPMM(8)

/* rows [lo, hi) for any D; D in 16, 32, 64, 128 keep the row in registers */
static void csr_spmm_rows(const int64_t *indptr, const int64_t *col, const float *weight,
                          const float *x, float *out, int64_t lo, int64_t hi, int64_t dim,
                          int mode, const float *other, float alpha) {
    switch (dim) {
    case 16: csr_spmm_1(indptr, col, weight, x, out, lo, hi, mode, other, alpha); return;
    case 32: csr_spmm_2(indptr, col, weight, x, out, lo, hi, mode, other, alpha); return;
    case 64: csr_spmm_4(indptr, col, weight, x, out, lo, hi, mode, other, alpha); return;
    case 128: csr_spmm_8(indptr, col, weight, x, out, lo, hi, mode, other, alpha); return;
    default: break;
    }
    for (int64_t r = lo; r < hi; r++) {  /* any other D: plain loops */
        float *o = out + r * dim;
        if (mode != SPMM_ACCUMULATE)
            for (int64_t k = 0; k < dim; k++) o[k] = 0.f;
        for (int64_t j = indptr[r]; j < indptr[r + 1]; j++) {
            const float *xr = x + col[j] * dim;
            float w = weight[j];
            for (int64_t k = 0; k < dim; k++) o[k] += w * xr[k];
        }
        if (mode == SPMM_ADD_SCALED) {
            const float *g = other + r * dim;
            for (int64_t k = 0; k < dim; k++) o[k] = o[k] + alpha * g[k];
        }
    }
}

/* the first row m with indptr[m] + m >= target: where a block of rows holding `target` of the
   entries-plus-rows begins (indptr[m] + m is increasing) */
static int64_t block_start(const int64_t *indptr, int64_t rows, int64_t target) {
    int64_t lo = 0, hi = rows;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (indptr[mid] + mid < target) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* the product, then `mode` with each finished row (the enum above; `other` (rows, dim) for
   SPMM_ADD_SCALED, else unused), on `threads` threads, each a contiguous block
   of rows holding an equal share of the entries plus the rows (degrees are skewed: equal row
   counts left one thread with most of the work); each output row is summed by one thread in
   entry order, as on one */
void csr_spmm_fused(const int64_t *indptr, const int64_t *col, const float *weight,
                    const float *x, float *out, int64_t rows, int64_t dim, int mode,
                    const float *other, float alpha, int threads) {
    int64_t work = (indptr[rows] + rows) * dim;
    if (threads <= 1 || work < PAR_MIN) {
        csr_spmm_rows(indptr, col, weight, x, out, 0, rows, dim, mode, other, alpha);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int t, n;
        thread_slot(&t, &n);
        int64_t total = indptr[rows] + rows;
        int64_t lo = block_start(indptr, rows, total * t / n);
        int64_t hi = t == n - 1 ? rows : block_start(indptr, rows, total * (t + 1) / n);
        csr_spmm_rows(indptr, col, weight, x, out, lo, hi, dim, mode, other, alpha);
    }
}

/* out (+)= the product: csr_spmm_fused's SPMM_STORE or SPMM_ACCUMULATE */
void csr_spmm(const int64_t *indptr, const int64_t *col, const float *weight, const float *x,
             float *out, int64_t rows, int64_t dim, int accumulate, int threads) {
    csr_spmm_fused(indptr, col, weight, x, out, rows, dim,
                   accumulate ? SPMM_ACCUMULATE : SPMM_STORE, (const float *)0, 0.f, threads);
}

/* BPR with one negative over a user and an item table (row length dim; the same table twice for
   a GNN's output table F, and then grad_u == grad_i): grad_u / grad_i get each row's gradient of
   mean(softplus(-u.(p - n))) plus shrink * the row (the L2 term, shrink = reg / B; 0 for none:
   then the rows get exactly the BPR gradient); out[0] = the summed softplus, out[1] = the rows'
   summed squares / 2 (counted only when shrink != 0). One loop per row written: grad never
   overlaps the tables, but gp == gn when p == n. */
void bpr_scatter(const float *users, const float *items, const int64_t *u, const int64_t *p,
                 const int64_t *n, int64_t batch, int64_t dim, float shrink, float *grad_u,
                 float *grad_i, double *out) {
    double loss = 0.0, sq = 0.0;
    float scale = -1.0f / (float)batch;
    for (int64_t b = 0; b < batch; b++) {
        if (b + ROWS_AHEAD < batch) {
            int64_t a = b + ROWS_AHEAD;
            prefetch_row(users + u[a] * dim, dim);
            prefetch_row(items + p[a] * dim, dim);
            prefetch_row(items + n[a] * dim, dim);
            prefetch_row_w(grad_u + u[a] * dim, dim);
            prefetch_row_w(grad_i + p[a] * dim, dim);
            prefetch_row_w(grad_i + n[a] * dim, dim);
        }
        const float *eu = users + u[b] * dim, *ep = items + p[b] * dim, *en = items + n[b] * dim;
        float c = bpr_slope(eu, ep, en, dim, scale, &loss);
        float *gu = grad_u + u[b] * dim, *gp = grad_i + p[b] * dim, *gn = grad_i + n[b] * dim;
#pragma GCC ivdep
        for (int64_t k = 0; k < dim; k++) gu[k] += c * (ep[k] - en[k]) + shrink * eu[k];
#pragma GCC ivdep
        for (int64_t k = 0; k < dim; k++) gp[k] += c * eu[k] + shrink * ep[k];
#pragma GCC ivdep
        for (int64_t k = 0; k < dim; k++) gn[k] += shrink * en[k] - c * eu[k];
        if (shrink != 0.f) sq += dot(eu, eu, dim) + dot(ep, ep, dim) + dot(en, en, dim);
    }
    out[0] = loss;
    out[1] = sq / 2;
}

/* softplus(x) = log(1 + e^x) and sigmoid(x) from one exp, stable at both ends */
static inline float softplus_sigmoid(float x, float *sig) {
    float e = expf(-fabsf(x));
    *sig = x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
    return (x > 0.f ? x : 0.f) + log1pf(e);
}

/* One weighted BCE term of UltraGCN, item row `ei` against user row `eu`: returns its loss,
   weight * softplus(sign * s) with s = eu.ei (sign -1 for a positive target, +1 for a
   negative), writes *coef = grad_scale * dL/ds and adds *coef * ei into the user's gradient
   row gu (d softplus(sign s)/ds = sign * sigmoid(sign s)) */
static inline float ultragcn_term(const float *eu, const float *ei, float *gu, int64_t dim,
                                  float weight, float sign, float grad_scale, float *coef) {
    float sig, s = dot(eu, ei, dim);
    float loss = weight * softplus_sigmoid(sign * s, &sig);
    float c = grad_scale * weight * sign * sig;
    *coef = c;
#pragma GCC ivdep
    for (int64_t k = 0; k < dim; k++) gu[k] += c * ei[k];
    return loss;
}

/* UltraGCN's batch (recbench/models/ultragcn.py says why and what each weight is), its gradient
   added into grad_u / grad_i (the gamma * theta term is the caller's). Pair b is (u[b], p[b])
   with the k negatives neg[b k ..] and the m item-item neighbours nbr[p[b] m ..] of weights
   omega[p[b] m ..]; w = {w1, w2, w3, w4, negative_weight, ii_weight}:
     L   = sum_b (w1 + w2 bu bi_p) softplus(-s_p)
             + negative_weight / k * sum_j (w3 + w4 bu bi_j) softplus(s_j)
     L_I = sum_b sum_q omega_q softplus(-s_q)          (= -omega log sigmoid(s_q))
   the gradient is that of L + ii_weight L_I; out[0] = L, out[1] = L_I.
   Three passes, so that two threads share the work and the floats are the same at any count:
   (1) each pair's 1 + k + m terms (scores, losses, dL/ds into work's `coef`, the user row's
   gradient into the pair's own row of work's `gub`), pairs split between threads; (2) the
   user rows, serially in pair order (two pairs may share a user); (3) the item rows: each
   thread adds into the rows of its own range of item ids, visiting every term in pair order,
   so each row's sum runs in the serial loop's order. work: batch (1 + k + m + dim + 2) floats. */
void ultragcn_scatter(const float *users, const float *items, const int64_t *u, const int64_t *p,
                      const int64_t *neg, int64_t batch, int64_t k, const int64_t *nbr,
                      const float *omega, int64_t m, const float *beta_u, const float *beta_i,
                      int64_t item_rows, int64_t dim, const float *w, float *grad_u,
                      float *grad_i, float *work, double *out, int threads) {
    const float w1 = w[0], w2 = w[1], w3 = w[2], w4 = w[3], neg_scale = w[4] / (float)k;
    const float ii_weight = w[5];
    const int64_t terms = 1 + k + m;
    float *coef = work, *gub = work + batch * terms, *pair_loss = gub + batch * dim;
    const int par = batch * terms * dim >= PAR_MIN ? threads : 1;
#pragma omp parallel for schedule(static) num_threads(par)
    for (int64_t b = 0; b < batch; b++) {
        const float *eu = users + u[b] * dim;
        float *gu = gub + b * dim, *c = coef + b * terms;
        for (int64_t d = 0; d < dim; d++) gu[d] = 0.f;
        const float bu = beta_u[u[b]];
        const int64_t pos = p[b];
        float pos_loss = ultragcn_term(eu, items + pos * dim, gu, dim, w1 + w2 * bu * beta_i[pos],
                                   -1.f, 1.f, c);
        const int64_t *nb = neg + b * k;
        double part = 0.0;  /* the pair's negatives, then scaled as their mean */
        for (int64_t j = 0; j < k; j++) {
            if (j + ROWS_AHEAD < k) prefetch_row(items + nb[j + ROWS_AHEAD] * dim, dim);
            part += ultragcn_term(eu, items + nb[j] * dim, gu, dim,
                                  w3 + w4 * bu * beta_i[nb[j]], 1.f, neg_scale, c + 1 + j);
        }
        const int64_t *q = nbr + pos * m;
        const float *om = omega + pos * m;
        double item_loss = 0.0;
        for (int64_t j = 0; j < m; j++)
            item_loss += ultragcn_term(eu, items + q[j] * dim, gu, dim, om[j], -1.f, ii_weight,
                                       c + 1 + k + j);
        pair_loss[2 * b] = (float)(pos_loss + neg_scale * part);
        pair_loss[2 * b + 1] = (float)item_loss;
    }
    double loss = 0.0, item_loss = 0.0;
    for (int64_t b = 0; b < batch; b++) {
        float *g = grad_u + u[b] * dim;
        const float *gu = gub + b * dim;
#pragma GCC ivdep
        for (int64_t d = 0; d < dim; d++) g[d] += gu[d];
        loss += pair_loss[2 * b];
        item_loss += pair_loss[2 * b + 1];
    }
#pragma omp parallel num_threads(par)
    {
        int t, n;
        thread_slot(&t, &n);
        const int64_t lo = item_rows * t / n, hi = item_rows * (t + 1) / n;
        for (int64_t b = 0; b < batch; b++) {
            const float *eu = users + u[b] * dim, *c = coef + b * terms;
            const int64_t *q = nbr + p[b] * m, *nb = neg + b * k;
            for (int64_t j = 0; j < terms; j++) {
                const int64_t row = j == 0 ? p[b] : j <= k ? nb[j - 1] : q[j - 1 - k];
                if (row < lo || row >= hi) continue;
                float *g = grad_i + row * dim;
                const float cj = c[j];
#pragma GCC ivdep
                for (int64_t d = 0; d < dim; d++) g[d] += cj * eu[d];
            }
        }
    }
    out[0] = loss;
    out[1] = item_loss;
}

/* the floats of ultragcn_scatter's workspace for a batch */
int64_t ultragcn_work_size(int64_t batch, int64_t k, int64_t m, int64_t dim) {
    return batch * (1 + k + m + dim + 2);
}

/* One Adam step on a contiguous float32 tensor, torch 2.2's multi-tensor Adam op for op:
   g (+= weight_decay * p); m = lerp(m, g, 1 - beta1); v = v * beta2 + (1 - beta2) g g;
   p += step_size * m / (sqrt(v) / bc2_sqrt + eps), step_size = -lr / (1 - beta1^t) */
void adam_update(float *param, const float *grad, float *m, float *v, int64_t count,
                 float step_size, float one_minus_beta1, float beta2, float one_minus_beta2,
                 float bc2_sqrt, float eps, float weight_decay, int threads) {
#pragma omp parallel for simd schedule(static) PAR_IF(count, threads)
    for (int64_t i = 0; i < count; i++) {
        float g = grad[i];
        if (weight_decay != 0.f) g = g + weight_decay * param[i];
        float mi = m[i] + one_minus_beta1 * (g - m[i]);
        float vi = v[i] * beta2 + one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] + step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}
