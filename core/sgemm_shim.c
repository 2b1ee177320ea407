/* cblas_sgemm for MLX on Linux that sends vector-matrix products to sgemv.
 *
 * MLX calls cblas_sgemm for every float32 matmul. At batch 1 (decoding one token) the product
 * is 1 x K times K x N, and OpenBLAS's gemm packs the whole K x N matrix for it: 50-70 us for
 * a 192 x 768 weight here, against 8-16 us for the same product through sgemv. This library
 * defines cblas_sgemm, routes row-major products with M == 1 or N == 1 to cblas_sgemv, and
 * everything else to OpenBLAS's sgemm_ (the Fortran entry, so it does not call itself).
 * core/blas.py compiles it at setup and loads it, with OpenBLAS, before MLX.
 */
#include <stddef.h>

enum { ROW_MAJOR = 101, COL_MAJOR = 102, NO_TRANS = 111, TRANS = 112, CONJ_TRANS = 113 };

void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float *a, int lda,
                 const float *x, int incx, float beta, float *y, int incy);
void sgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
            const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
            const float *beta, float *c, const int *ldc);

static long molscope_vector_calls = 0;

/* How many products took the sgemv path (for tests). */
long molscope_sgemm_vector_calls(void) {
    return __atomic_load_n(&molscope_vector_calls, __ATOMIC_RELAXED);
}

static void clear(float *y, int n, int inc) {
    /* beta == 0: the output may hold anything (NaN included); BLAS must not read it */
    for (int i = 0; i < n; i++) y[(size_t)i * inc] = 0.0f;
}

void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c,
                 int ldc) {
    int ta = transa != NO_TRANS, tb = transb != NO_TRANS;
    if (order == ROW_MAJOR && k > 0 && m == 1 && n > 0) {
        /* c (1 x n) = op(a) (1 x k) . op(b) (k x n): y = op(b)^T x */
        int incx = ta ? lda : 1; /* op(a) row: a is k x 1 when transposed */
        if (beta == 0.0f) clear(c, n, 1);
        if (tb) /* b is n x k: y = b x */
            cblas_sgemv(ROW_MAJOR, NO_TRANS, n, k, alpha, b, ldb, a, incx, beta, c, 1);
        else /* b is k x n: y = b^T x */
            cblas_sgemv(ROW_MAJOR, TRANS, k, n, alpha, b, ldb, a, incx, beta, c, 1);
        __atomic_fetch_add(&molscope_vector_calls, 1, __ATOMIC_RELAXED);
        return;
    }
    if (order == ROW_MAJOR && k > 0 && n == 1 && m > 0) {
        /* c (m x 1) = op(a) (m x k) . op(b) (k x 1): y = op(a) x, stored with stride ldc */
        int incx = tb ? 1 : ldb; /* op(b) column: b is 1 x k when transposed */
        if (beta == 0.0f) clear(c, m, ldc);
        if (ta) /* a is k x m: y = a^T x */
            cblas_sgemv(ROW_MAJOR, TRANS, k, m, alpha, a, lda, b, incx, beta, c, ldc);
        else
            cblas_sgemv(ROW_MAJOR, NO_TRANS, m, k, alpha, a, lda, b, incx, beta, c, ldc);
        __atomic_fetch_add(&molscope_vector_calls, 1, __ATOMIC_RELAXED);
        return;
    }
    /* Column-major view of the same product: c^T (n x m) = op(b)^T . op(a)^T */
    const char no = 'N', yes = 'T';
    if (order == ROW_MAJOR) {
        sgemm_(tb ? &yes : &no, ta ? &yes : &no, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c,
               &ldc);
    } else {
        sgemm_(ta ? &yes : &no, tb ? &yes : &no, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c,
               &ldc);
    }
}
