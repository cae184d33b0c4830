// Varlen paged attention for CPUs: every request attends to exactly its own context, no padding.
//
// Pool layout of one layer (float32), per block and KV head:
//   K: [num_blocks][kv_heads][head_dim][block_size]   (transposed: a key block is scored against a
//      query with broadcast-and-FMA over block_size contiguous keys, no horizontal sums)
//   V: [num_blocks][kv_heads][block_size][head_dim]
// A step's tokens are flattened [T, heads, head_dim]; sequence s owns rows
// [row0, row0 + n) at positions [start, start + n) and its block table row.
// Built by kairos.serve.native.build with -march=native; single-threaded.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

struct Seq {
    int32_t row0;   // first row of the request in the flattened batch
    int32_t n;      // rows (new tokens) this step
    int32_t start;  // tokens already cached before this step
};

// exp(x) for x <= 0 (scores minus their row maximum), vectorisable; relative error ~1e-7.
inline float exp_nonpos(float x) {
    x = std::max(x, -87.0f);
    const float t = x * 1.44269504088896341f;  // log2(e)
    const float fi = std::floor(t);
    const float f = t - fi;  // [0, 1)
    // 2^f on [0, 1): degree-6 minimax polynomial.
    float p = 1.535336188319500e-4f;
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    int32_t bits;
    std::memcpy(&bits, &p, 4);
    bits += static_cast<int32_t>(fi) << 23;
    float r;
    std::memcpy(&r, &bits, 4);
    return r;
}

constexpr int kMaxDim = 512;  // largest head_dim (stack buffers)
constexpr int kChunk = 16;  // stride granularity of the score rows

// Scores of NQ query vectors q[NQ][D] (pre-scaled) against keys [j0, j0 + KC) of one block,
// written to s[qi * stride + j]. kt: [D][bs] keys of this block and KV head. Few query vectors
// split the head dimension over two accumulator sets: independent FMA chains hide latency.
template <int NQ, int D, int KC>
inline void score_chunk(const float* q, int dim, const float* kt, int bs, int j0, float* s, int stride) {
    constexpr int S = NQ <= 2 ? 2 : 1;
    const int n = D ? D : dim;
    float acc[S][NQ][KC] = {};
    int d = 0;
    for (; d + S <= n; d += S)
        for (int h = 0; h < S; ++h) {
            const float* krow = kt + static_cast<int64_t>(d + h) * bs + j0;
            for (int qi = 0; qi < NQ; ++qi) {
                const float qd = q[qi * n + d + h];
                for (int j = 0; j < KC; ++j) acc[h][qi][j] += qd * krow[j];
            }
        }
    for (; d < n; ++d) {
        const float* krow = kt + static_cast<int64_t>(d) * bs + j0;
        for (int qi = 0; qi < NQ; ++qi)
            for (int j = 0; j < KC; ++j) acc[0][qi][j] += q[qi * n + d] * krow[j];
    }
    for (int qi = 0; qi < NQ; ++qi)
        for (int j = 0; j < KC; ++j) {
            float total = 0.0f;
            for (int h = 0; h < S; ++h) total += acc[h][qi][j];
            s[qi * stride + j0 + j] = total;
        }
}

// Scores against the first `count` keys of a block, 32 at a time (two 512-bit registers per
// query vector), then 16, then one by one.
template <int NQ, int D>
inline void score_block(const float* q, int dim_rt, const float* kt, int bs, int count, float* s, int stride) {
    const int dim = D ? D : dim_rt;
    int j0 = 0;
    for (; j0 + 32 <= count; j0 += 32) score_chunk<NQ, D, 32>(q, dim, kt, bs, j0, s, stride);
    for (; j0 + 16 <= count; j0 += 16) score_chunk<NQ, D, 16>(q, dim, kt, bs, j0, s, stride);
    for (int j = j0; j < count; ++j) {  // tail of a small or partly filled block
        for (int qi = 0; qi < NQ; ++qi) {
            float acc = 0.0f;
            for (int d = 0; d < dim; ++d) acc += q[qi * dim + d] * kt[static_cast<int64_t>(d) * bs + j];
            s[qi * stride + j] = acc;
        }
    }
}

// Ask for a block's keys or values ahead of use: blocks are scattered over the pool, and one
// block's arithmetic is far shorter than its trip from memory, so requests run kAhead blocks
// ahead (many in flight at once) into L2.
constexpr int kAhead = 6;
inline void prefetch(const float* p, int64_t floats) {
    for (int64_t i = 0; i < floats; i += 16) __builtin_prefetch(p + i, 0, 2);
}

// acc[NQ][D] += sum over `count` tokens of p[qi * stride + j] * v[j][D]. Few query vectors
// alternate tokens between two accumulator sets (independent FMA chains).
template <int NQ, int D>
inline void accumulate_block(const float* p, int stride, const float* v, int dim_rt, int count, float* acc) {
    const int dim = D ? D : dim_rt;
    if (D) {
        constexpr int S = NQ <= 2 ? 2 : 1;
        float a[S][NQ][D ? D : 1] = {};
        int j = 0;
        for (; j + S <= count; j += S)
            for (int h = 0; h < S; ++h) {
                const float* vr = v + static_cast<int64_t>(j + h) * D;
                for (int qi = 0; qi < NQ; ++qi) {
                    const float pj = p[qi * stride + j + h];
                    for (int d = 0; d < D; ++d) a[h][qi][d] += pj * vr[d];
                }
            }
        for (; j < count; ++j) {
            const float* vr = v + static_cast<int64_t>(j) * D;
            for (int qi = 0; qi < NQ; ++qi) {
                const float pj = p[qi * stride + j];
                for (int d = 0; d < D; ++d) a[0][qi][d] += pj * vr[d];
            }
        }
        for (int qi = 0; qi < NQ; ++qi)
            for (int d = 0; d < D; ++d) {
                float total = 0.0f;
                for (int h = 0; h < S; ++h) total += a[h][qi][d];
                acc[qi * D + d] += total;
            }
        return;
    }
    for (int j = 0; j < count; ++j)
        for (int qi = 0; qi < NQ; ++qi) {
            const float pj = p[qi * stride + j];
            for (int d = 0; d < dim; ++d) acc[qi * dim + d] += pj * v[static_cast<int64_t>(j) * dim + d];
        }
}

struct Shape {
    int heads, kv_heads, dim, bs, table_stride;
    float scale;
    int64_t q_stride;  // elements between two rows of q
    const float* cos;  // [T, dim] rotary embedding of each row (HF's half-split layout), or null: none
    const float* sin;
};

// x[dim] rotated by row `row`'s angles into out (x and out may not alias), as HF Llama's
// apply_rotary_pos_emb: x * cos + rotate_half(x) * sin.
inline void rotate(const float* x, int dim, int64_t row, const Shape& sh, float* out) {
    const float* c = sh.cos + row * dim;
    const float* sn = sh.sin + row * dim;
    const int half = dim / 2;
    for (int d = 0; d < half; ++d) out[d] = x[d] * c[d] - x[d + half] * sn[d];
    for (int d = half; d < dim; ++d) out[d] = x[d] * c[d] + x[d - half] * sn[d];
}

// One tile: NQ consecutive query vectors [k0, k0 + NQ) of a sequence and KV head h, where
// vector k is row k / groups, query head h * groups + k % groups.
template <int NQ, int D>
void attend_tile(const float* qbase, float* out, const float* kcache, const float* vcache, const int32_t* table,
                 const Seq& seq, int h, int k0, const Shape& sh, std::vector<float>& scores) {
    const int dim = D ? D : sh.dim;
    const int groups = sh.heads / sh.kv_heads;
    float q[NQ * (D ? D : kMaxDim)];
    int64_t offset[NQ];  // element offset of each vector in q and out
    int valid[NQ];  // keys each query vector may see (causal)
    int len = 0;  // the tile's longest context
    for (int qi = 0; qi < NQ; ++qi) {
        const int r = (k0 + qi) / groups;
        const int64_t row = seq.row0 + r;
        const int64_t head = static_cast<int64_t>(h) * groups + (k0 + qi) % groups;
        offset[qi] = (row * sh.heads + head) * dim;
        const float* src = qbase + row * sh.q_stride + head * dim;
        float* dst = q + qi * dim;
        if (sh.cos) rotate(src, dim, row, sh, dst);
        else std::copy(src, src + dim, dst);
        for (int d = 0; d < dim; ++d) dst[d] *= sh.scale;
        valid[qi] = seq.start + r + 1;
        len = std::max(len, valid[qi]);
    }
    const int stride = (len + kChunk - 1) / kChunk * kChunk;
    if (scores.size() < static_cast<size_t>(NQ) * stride) scores.resize(static_cast<size_t>(NQ) * stride);
    float* s = scores.data();
    const int64_t block_elems = static_cast<int64_t>(sh.kv_heads) * dim * sh.bs;
    const int64_t head_elems = static_cast<int64_t>(dim) * sh.bs;
    const int num_blocks = (len + sh.bs - 1) / sh.bs;
    // Values are read after the softmax: ask for them with the keys, they wait in L2.
    for (int b = 0; b < std::min(kAhead, num_blocks); ++b) {
        prefetch(kcache + table[b] * block_elems + h * head_elems, head_elems);
        prefetch(vcache + table[b] * block_elems + h * head_elems, head_elems);
    }
    for (int b = 0, t0 = 0; t0 < len; ++b, t0 += sh.bs) {
        const float* kt = kcache + table[b] * block_elems + h * head_elems;
        if (b + kAhead < num_blocks) {
            prefetch(kcache + table[b + kAhead] * block_elems + h * head_elems, head_elems);
            prefetch(vcache + table[b + kAhead] * block_elems + h * head_elems, head_elems);
        }
        score_block<NQ, D>(q, dim, kt, sh.bs, std::min(sh.bs, len - t0), s + t0, stride);
    }
    float inv_sum[NQ] = {};
    for (int qi = 0; qi < NQ; ++qi) {
        float* row = s + static_cast<int64_t>(qi) * stride;
        const int n = valid[qi];
        float mx = row[0];
        for (int j = 1; j < n; ++j) mx = std::max(mx, row[j]);
        float sum = 0.0f;
        for (int j = 0; j < n; ++j) {
            const float e = exp_nonpos(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        for (int j = n; j < len; ++j) row[j] = 0.0f;  // keys past this vector's position
        inv_sum[qi] = 1.0f / sum;
    }
    float acc[NQ * (D ? D : kMaxDim)];
    std::fill(acc, acc + NQ * dim, 0.0f);
    for (int b = 0, t0 = 0; t0 < len; ++b, t0 += sh.bs) {
        const float* v = vcache + table[b] * block_elems + h * head_elems;
        accumulate_block<NQ, D>(s + t0, stride, v, dim, std::min(sh.bs, len - t0), acc);
    }
    for (int qi = 0; qi < NQ; ++qi)
        for (int d = 0; d < dim; ++d) out[offset[qi] + d] = acc[qi * dim + d] * inv_sum[qi];
}

template <int D>
void attend_all(const float* q, float* out, const float* kcache, const float* vcache, const Seq* seqs, int num_seqs,
                const int32_t* tables, const Shape& sh) {
    static thread_local std::vector<float> scores;
    static thread_local std::vector<int> order;
    const int groups = sh.heads / sh.kv_heads;
    // Requests sharing a cached prefix share its blocks: visiting them one after another reads
    // those blocks from cache instead of memory.
    order.resize(num_seqs);
    for (int i = 0; i < num_seqs; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return tables[static_cast<int64_t>(a) * sh.table_stride] < tables[static_cast<int64_t>(b) * sh.table_stride];
    });
    for (int i : order) {
        const Seq& seq = seqs[i];
        const int32_t* table = tables + static_cast<int64_t>(i) * sh.table_stride;
        const int total = seq.n * groups;
        for (int h = 0; h < sh.kv_heads; ++h) {
            // Tiles of 8 vectors, the remainder in tiles of 4, 2 and 1: four kernels cover any count.
            int k0 = 0;
            for (; k0 + 8 <= total; k0 += 8) attend_tile<8, D>(q, out, kcache, vcache, table, seq, h, k0, sh, scores);
            if (total - k0 >= 4) { attend_tile<4, D>(q, out, kcache, vcache, table, seq, h, k0, sh, scores); k0 += 4; }
            if (total - k0 >= 2) { attend_tile<2, D>(q, out, kcache, vcache, table, seq, h, k0, sh, scores); k0 += 2; }
            if (total - k0 >= 1) attend_tile<1, D>(q, out, kcache, vcache, table, seq, h, k0, sh, scores);
        }
    }
}

void write_kv_impl(const float* k, const float* v, int64_t k_stride, int64_t v_stride, const Seq* seqs, int num_seqs,
                   const int32_t* tables, float* kcache, float* vcache, const Shape& sh) {
    const int dim = sh.dim;
    const int64_t block_elems = static_cast<int64_t>(sh.kv_heads) * dim * sh.bs;
    const int64_t head_elems = static_cast<int64_t>(dim) * sh.bs;
    for (int i = 0; i < num_seqs; ++i) {
        const Seq& seq = seqs[i];
        const int32_t* table = tables + static_cast<int64_t>(i) * sh.table_stride;
        for (int r = 0; r < seq.n; ++r) {
            const int pos = seq.start + r;
            const int64_t blk = table[pos / sh.bs];
            const int j = pos % sh.bs;
            const int64_t row = seq.row0 + r;
            const float* krow = k + row * k_stride;
            const float* vrow = v + row * v_stride;
            float rotated[kMaxDim];
            for (int h = 0; h < sh.kv_heads; ++h) {
                const float* kh = krow + h * dim;
                if (sh.cos) {
                    rotate(kh, dim, row, sh, rotated);
                    kh = rotated;
                }
                float* kt = kcache + blk * block_elems + h * head_elems + j;
                float* vt = vcache + blk * block_elems + h * head_elems + static_cast<int64_t>(j) * dim;
                for (int d = 0; d < dim; ++d) {
                    kt[static_cast<int64_t>(d) * sh.bs] = kh[d];
                    vt[d] = vrow[h * dim + d];
                }
            }
        }
    }
}

void attend_dispatch(const float* q, float* out, const float* kcache, const float* vcache, const Seq* seqs,
                     int num_seqs, const int32_t* tables, const Shape& sh) {
    // No case for 16: compiled for it, the kernels ran at half the speed of the runtime-size ones.
    switch (sh.dim) {
        case 32: return attend_all<32>(q, out, kcache, vcache, seqs, num_seqs, tables, sh);
        case 64: return attend_all<64>(q, out, kcache, vcache, seqs, num_seqs, tables, sh);
        case 128: return attend_all<128>(q, out, kcache, vcache, seqs, num_seqs, tables, sh);
        default: return attend_all<0>(q, out, kcache, vcache, seqs, num_seqs, tables, sh);
    }
}

}  // namespace

extern "C" {

// Version of this interface; the loader refuses a library that reports another.
int kairos_native_abi() { return 2; }

// Writes this step's K (rotated by cos/sin unless they are null) and V rows into the pool at each
// token's slot. Rows are k_stride / v_stride elements apart; heads within a row are contiguous.
void kairos_write_kv(const float* k, const float* v, int64_t k_stride, int64_t v_stride, const float* cos,
                     const float* sin, const int32_t* seqs, int num_seqs, const int32_t* tables, int table_stride,
                     float* kcache, float* vcache, int kv_heads, int dim, int bs) {
    if (dim > kMaxDim) return;
    const Shape sh{0, kv_heads, dim, bs, table_stride, 1.0f, 0, cos, sin};
    write_kv_impl(k, v, k_stride, v_stride, reinterpret_cast<const Seq*>(seqs), num_seqs, tables, kcache, vcache, sh);
}

// out[T, heads, dim] = causal attention of q (rows q_stride apart, rotated by cos/sin unless null)
// over each sequence's cached context; call after kairos_write_kv of the step. Returns 0, or -1
// for an unsupported head layout.
int kairos_paged_attention(const float* q, int64_t q_stride, const float* cos, const float* sin, float* out,
                           const float* kcache, const float* vcache, const int32_t* seqs, int num_seqs,
                           const int32_t* tables, int table_stride, int heads, int kv_heads, int dim, int bs,
                           float scale) {
    if (dim > kMaxDim || kv_heads < 1 || heads % kv_heads) return -1;
    const Shape sh{heads, kv_heads, dim, bs, table_stride, scale, q_stride, cos, sin};
    attend_dispatch(q, out, kcache, vcache, reinterpret_cast<const Seq*>(seqs), num_seqs, tables, sh);
    return 0;
}

}  // extern "C"
