/* OTLP ExportTraceServiceRequest payloads -> one ClickHouse Native block of otel_traces rows.
 *
 * execscope.collector._otlp_native.convert(payloads) -> (block: bytes, spans: int, events: int)
 *
 * Why by hand: the embedded engine's own protobuf parser (FORMAT Protobuf over the nested OTLP
 * structure, native_ingest.py) is the bound of the store (about 170k spans per core-second); the
 * same rows handed to it as a Native block insert at over 500k. The Python decoder builds a Python
 * object per span and per attribute (about 30k/s). google.protobuf's upb has no C API that another
 * extension can call, and the OTLP trace messages are small and fixed (nine message types, one
 * recursive value), so this file walks the wire format itself: varints, fixed64 and length-delimited
 * fields, every read checked against the end of its enclosing message.
 *
 * Contract: the rows are exactly those otlp_decode.decode_columns gives (and that the table
 * computes for its MATERIALIZED columns, native_ingest.DERIVED): hex ids, SPAN_KIND_* / STATUS_CODE_*
 * names, attribute maps with the last value of a repeated key at the key's first place, every
 * AnyValue as otlp_decode.any_value_to_str renders it (double as ClickHouse's toString(Float64),
 * bytes as lower hex, array and kvlist as compact JSON with ASCII escapes, as json.dumps does).
 * Anything it does not take exactly as the Python decoder would (malformed or truncated input,
 * invalid UTF-8 in a string field, a span whose trace id is not 16 bytes or span id not 8, a
 * known field with an unexpected wire type, groups, merged repeated submessages of a value,
 * nesting deeper than 64) raises ValueError and writes nothing: the caller then decodes those
 * payloads one by one in Python, which either stores them or names the poison. Never reads outside
 * the payloads, never crashes on any input.
 *
 * Native block layout (checked against what chDB writes for SELECT ... FORMAT Native):
 * varint column count, varint row count, then per column: name and type as varint-length strings
 * and the data: String = varint length + bytes per row; UInt64 / DateTime64(9) = 8 bytes little
 * endian per row; Array(T) = cumulative UInt64 end offsets per row, then T's data for all elements;
 * Map(K, String) = Array(Tuple(K, String)): offsets, then every key, then every value.
 * LowCardinality(String) (the table's own type of SpanName, SpanKind, ServiceName, StatusCode,
 * CodeVersion, Events.Name and every attribute map's keys): the keys are interned here, one
 * dictionary per column and block, so the engine takes them as they are instead of hashing every
 * string of the block (measured: the insert about 20% cheaper). A column that has any
 * LowCardinality in it starts with its serialization prefix, UInt64 1 (shared dictionaries with
 * additional keys), before its offsets; the LowCardinality data itself (none at all when it has no
 * values) is UInt64 flags (index width: 0 = UInt8, 1 = UInt16, 2 = UInt32; 0x600 = additional keys
 * that update the dictionary), UInt64 key count, the keys as Strings ("" first, then in order of
 * first use), UInt64 value count, one index per value, little endian.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/uio.h>

#define MAX_DEPTH 64
/* the wire readers, called for every field: inlined where they are used (GCC and Clang) */
#if defined(__GNUC__)
#define HOT static inline __attribute__((always_inline))
#else
#define HOT static inline
#endif

/* ---- growable output buffers ---------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

typedef struct {
    const char *err; /* first error (static message); set => everything after fails fast */
    char errbuf[160];
} Ctx;

static int fail(Ctx *c, const char *msg) {
    if (!c->err) c->err = msg;
    return -1;
}

static int buf_grow(Ctx *c, Buf *b, size_t extra) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        if (cap > ((size_t)1 << 40)) return fail(c, "output too large");
        cap *= 2;
    }
    char *p = PyMem_Realloc(b->p, cap);
    if (!p) return fail(c, "out of memory");
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_reserve(Ctx *c, Buf *b, size_t extra) {
    return b->len + extra <= b->cap ? 0 : buf_grow(c, b, extra);
}

static inline int put(Ctx *c, Buf *b, const void *data, size_t n) {
    if (buf_reserve(c, b, n)) return -1;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static inline int put_varint(Ctx *c, Buf *b, uint64_t v) {
    if (buf_reserve(c, b, 10)) return -1;
    while (v >= 0x80) {
        b->p[b->len++] = (char)((v & 0x7f) | 0x80);
        v >>= 7;
    }
    b->p[b->len++] = (char)v;
    return 0;
}

static inline int put_u64(Ctx *c, Buf *b, uint64_t v) {
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(v >> (8 * i)); /* one store once optimised */
    return put(c, b, le, 8);
}

/* one Native String value */
static inline int put_str(Ctx *c, Buf *b, const void *data, size_t n) {
    if (put_varint(c, b, n)) return -1;
    return put(c, b, data, n);
}

/* "00".."ff", two digits per byte value */
static char HEX_PAIRS[512];

static void init_hex_pairs(void) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 256; i++) {
        HEX_PAIRS[2 * i] = digits[i >> 4];
        HEX_PAIRS[2 * i + 1] = digits[i & 15];
    }
}

static inline void hex_into(char *w, const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; i++) memcpy(w + 2 * i, HEX_PAIRS + 2 * data[i], 2);
}

static int put_hex_str(Ctx *c, Buf *b, const uint8_t *data, size_t n) {
    if (put_varint(c, b, 2 * n) || buf_reserve(c, b, 2 * n)) return -1;
    hex_into(b->p + b->len, data, n);
    b->len += 2 * n;
    return 0;
}

/* ---- protobuf wire reading ------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p, *end;
} Rd;

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static int rd_varint_slow(Ctx *c, Rd *r, uint64_t *out);

HOT int rd_varint(Ctx *c, Rd *r, uint64_t *out) {
    if (r->p < r->end && *r->p < 0x80) {
        *out = *r->p++;
        return 0;
    }
    if (r->end - r->p >= 2 && r->p[1] < 0x80) { /* two bytes: the length of most spans */
        *out = (uint64_t)(r->p[0] & 0x7f) | ((uint64_t)r->p[1] << 7);
        r->p += 2;
        return 0;
    }
    return rd_varint_slow(c, r, out);
}

static int rd_varint_slow(Ctx *c, Rd *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return fail(c, "truncated varint");
        uint8_t byte = *r->p++;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return fail(c, "varint longer than 10 bytes");
}

HOT int rd_tag(Ctx *c, Rd *r, uint32_t *field, int *wt) {
    uint64_t tag;
    if (rd_varint(c, r, &tag)) return -1;
    if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return fail(c, "invalid field number");
    *field = (uint32_t)(tag >> 3);
    *wt = (int)(tag & 7);
    return 0;
}

HOT int rd_fixed64(Ctx *c, Rd *r, uint64_t *out) {
    if (r->end - r->p < 8) return fail(c, "truncated fixed64");
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | r->p[i];
    r->p += 8;
    *out = v;
    return 0;
}

HOT int rd_len(Ctx *c, Rd *r, Rd *sub) {
    uint64_t n;
    if (rd_varint(c, r, &n)) return -1;
    if (n > (uint64_t)(r->end - r->p)) return fail(c, "length past the end of its message");
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return 0;
}

static int skip(Ctx *c, Rd *r, int wt) {
    uint64_t v;
    Rd sub;
    switch (wt) {
    case WT_VARINT: return rd_varint(c, r, &v);
    case WT_I64: return rd_fixed64(c, r, &v);
    case WT_LEN: return rd_len(c, r, &sub);
    case WT_I32:
        if (r->end - r->p < 4) return fail(c, "truncated fixed32");
        r->p += 4;
        return 0;
    default: return fail(c, "unsupported wire type (group or invalid)");
    }
}

HOT int want(Ctx *c, int wt, int expected) {
    return wt == expected ? 0 : fail(c, "known field with an unexpected wire type");
}

/* The next occurrence of the length-delimited field ``field`` in ``r`` (other fields skipped), into
 * ``sub``: 1 when there is one, 0 at the end of ``r``, -1 on malformed input. */
static int next_len_field(Ctx *c, Rd *r, uint32_t field, Rd *sub) {
    while (r->p < r->end) {
        uint32_t f;
        int wt;
        if (rd_tag(c, r, &f, &wt)) return -1;
        if (f != field) {
            if (skip(c, r, wt)) return -1;
            continue;
        }
        if (want(c, wt, WT_LEN) || rd_len(c, r, sub)) return -1;
        return 1;
    }
    return 0;
}

/* UTF-8 as protobuf's string fields require it (what upb checks: well formed, no surrogates). */
static int utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { /* ASCII, eight bytes at a time */
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL) break;
    }
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp;
        if ((b & 0xe0) == 0xc0) { k = 1; cp = b & 0x1f; }
        else if ((b & 0xf0) == 0xe0) { k = 2; cp = b & 0x0f; }
        else if ((b & 0xf8) == 0xf0) { k = 3; cp = b & 0x07; }
        else return 0;
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

static int rd_string(Ctx *c, Rd *r, Rd *out) {
    if (rd_len(c, r, out)) return -1;
    if (!utf8_ok(out->p, (size_t)(out->end - out->p))) return fail(c, "string field with invalid UTF-8");
    return 0;
}

/* ---- AnyValue rendering --------------------------------------------------------------------- */

typedef struct {
    int kind; /* AnyValue field number of the oneof (0: none) */
    uint64_t scalar;
    Rd data;
} Value;

HOT int parse_any(Ctx *c, Rd body, Value *v) {
    int nested = 0;
    memset(v, 0, sizeof *v);
    while (body.p < body.end) {
        uint32_t f;
        int wt;
        if (rd_tag(c, &body, &f, &wt)) return -1;
        switch (f) {
        case 1: /* string_value */
            if (want(c, wt, WT_LEN) || rd_string(c, &body, &v->data)) return -1;
            break;
        case 2: case 3: /* bool_value, int_value */
            if (want(c, wt, WT_VARINT) || rd_varint(c, &body, &v->scalar)) return -1;
            break;
        case 4: /* double_value */
            if (want(c, wt, WT_I64) || rd_fixed64(c, &body, &v->scalar)) return -1;
            break;
        case 5: case 6: /* array_value, kvlist_value: a second one would be merged into the first */
            if (want(c, wt, WT_LEN) || rd_len(c, &body, &v->data)) return -1;
            if (nested++) return fail(c, "repeated array or kvlist value (merged by protobuf)");
            break;
        case 7: /* bytes_value */
            if (want(c, wt, WT_LEN) || rd_len(c, &body, &v->data)) return -1;
            break;
        default:
            if (skip(c, &body, wt)) return -1;
            continue;
        }
        v->kind = (int)f;
    }
    return 0;
}

/* ClickHouse's toString(Float64): shortest round-trip digits, plain notation for decimal exponents
 * -6..20, else d[.ddd]e[-]N (double-conversion's ToShortest with the JavaScript limits). */
static int put_ch_double(Ctx *c, Buf *b, double d) {
    if (isnan(d)) return put(c, b, "nan", 3);
    if (isinf(d)) return d > 0 ? put(c, b, "inf", 3) : put(c, b, "-inf", 4);
    char *repr = PyOS_double_to_string(d, 'r', 0, 0, NULL);
    if (!repr) {
        PyErr_Clear();
        return fail(c, "out of memory");
    }
    /* repr is [-]digits[.digits][e[+-]N]: its digits, and the place of the point (decpt: value =
     * 0.d1d2...dn x 10^decpt) */
    char digits[40];
    int n = 0, before_point = -1, neg = 0;
    long exp10 = 0;
    const char *s = repr;
    if (*s == '-') { neg = 1; s++; }
    for (; *s && *s != 'e'; s++) {
        if (*s == '.') before_point = n;
        else if (n < (int)sizeof digits) digits[n++] = *s;
    }
    if (*s == 'e') exp10 = strtol(s + 1, NULL, 10);
    PyMem_Free(repr);
    int decpt = (before_point < 0 ? n : before_point) + (int)exp10, lead = 0;
    while (lead < n && digits[lead] == '0') lead++;
    decpt -= lead;
    n -= lead;
    memmove(digits, digits + lead, (size_t)n);
    while (n > 0 && digits[n - 1] == '0') n--;
    if (neg && put(c, b, "-", 1)) return -1;
    if (n == 0) return put(c, b, "0", 1);
    int e = decpt - 1, k = 0;
    char out[400];
    if (e >= -6 && e < 21) {
        if (decpt <= 0) {
            out[k++] = '0';
            out[k++] = '.';
            for (int i = 0; i < -decpt; i++) out[k++] = '0';
            memcpy(out + k, digits, (size_t)n);
            k += n;
        } else if (decpt >= n) {
            memcpy(out + k, digits, (size_t)n);
            k += n;
            for (int i = 0; i < decpt - n; i++) out[k++] = '0';
        } else {
            memcpy(out + k, digits, (size_t)decpt);
            k += decpt;
            out[k++] = '.';
            memcpy(out + k, digits + decpt, (size_t)(n - decpt));
            k += n - decpt;
        }
    } else {
        out[k++] = digits[0];
        if (n > 1) {
            out[k++] = '.';
            memcpy(out + k, digits + 1, (size_t)(n - 1));
            k += n - 1;
        }
        k += snprintf(out + k, sizeof out - (size_t)k, "e%d", e);
    }
    return put(c, b, out, (size_t)k);
}

static int put_py_float_repr(Ctx *c, Buf *b, double d) { /* json.dumps of a float */
    if (isnan(d)) return put(c, b, "NaN", 3);
    if (isinf(d)) return d > 0 ? put(c, b, "Infinity", 8) : put(c, b, "-Infinity", 9);
    char *repr = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!repr) {
        PyErr_Clear();
        return fail(c, "out of memory");
    }
    int rc = put(c, b, repr, strlen(repr));
    PyMem_Free(repr);
    return rc;
}

static int put_int64(Ctx *c, Buf *b, int64_t v) {
    char tmp[24];
    int k = (int)sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--k] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[--k] = '-';
    return put(c, b, tmp + k, sizeof tmp - (size_t)k);
}

static int put_hex(Ctx *c, Buf *b, Rd data) {
    size_t n = (size_t)(data.end - data.p);
    if (buf_reserve(c, b, 2 * n)) return -1;
    hex_into(b->p + b->len, data.p, n);
    b->len += 2 * n;
    return 0;
}

/* a JSON string as json.dumps writes it (ensure_ascii): the input is valid UTF-8 */
static int put_json_str(Ctx *c, Buf *b, const uint8_t *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (put(c, b, "\"", 1)) return -1;
    size_t i = 0;
    while (i < n) {
        uint32_t cp = s[i];
        size_t k = 0;
        if (cp >= 0x80) {
            if ((cp & 0xe0) == 0xc0) { k = 1; cp &= 0x1f; }
            else if ((cp & 0xf0) == 0xe0) { k = 2; cp &= 0x0f; }
            else { k = 3; cp &= 0x07; }
            for (size_t j = 1; j <= k && i + j < n; j++) cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        i += k + 1;
        char esc[12];
        int m = 0;
        switch (cp) {
        case '"': esc[m++] = '\\'; esc[m++] = '"'; break;
        case '\\': esc[m++] = '\\'; esc[m++] = '\\'; break;
        case '\n': esc[m++] = '\\'; esc[m++] = 'n'; break;
        case '\r': esc[m++] = '\\'; esc[m++] = 'r'; break;
        case '\t': esc[m++] = '\\'; esc[m++] = 't'; break;
        case '\b': esc[m++] = '\\'; esc[m++] = 'b'; break;
        case '\f': esc[m++] = '\\'; esc[m++] = 'f'; break;
        default:
            if (cp >= 0x20 && cp < 0x7f) {
                esc[m++] = (char)cp;
            } else {
                uint32_t units[2];
                int u = 0;
                if (cp >= 0x10000) {
                    units[u++] = 0xd800 + ((cp - 0x10000) >> 10);
                    units[u++] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
                } else {
                    units[u++] = cp;
                }
                for (int x = 0; x < u; x++) {
                    esc[m++] = '\\'; esc[m++] = 'u';
                    esc[m++] = hex[(units[x] >> 12) & 15]; esc[m++] = hex[(units[x] >> 8) & 15];
                    esc[m++] = hex[(units[x] >> 4) & 15]; esc[m++] = hex[units[x] & 15];
                }
            }
        }
        if (put(c, b, esc, (size_t)m)) return -1;
    }
    return put(c, b, "\"", 1);
}

/* key/value pairs of a map or kvlist: the key in the input; the value in the input too (val: a
 * string value, as it is) or rendered into a scratch buffer (val NULL: at val_off there) */
typedef struct {
    const uint8_t *key, *val;
    size_t key_len, val_off, val_len;
    uint32_t key_idx; /* the key's index in its column's dictionary (the maps of columns) */
    int dead;         /* superseded by a later pair with the same key (which moved its value here) */
} Pair;

static inline const char *pair_val(const Pair *p, const Buf *scratch) {
    return p->val ? (const char *)p->val : scratch->p + p->val_off;
}

typedef struct {
    Pair *p;
    size_t len, cap;
} Pairs;

static int pairs_grow(Ctx *c, Pairs *ps) {
    size_t cap = ps->cap ? ps->cap * 2 : 16;
    Pair *p = PyMem_Realloc(ps->p, cap * sizeof(Pair));
    if (!p) return fail(c, "out of memory");
    ps->p = p;
    ps->cap = cap;
    return 0;
}

/* a new pair at the end of ps, every field zero; NULL when out of memory (filled in place: a Pair
 * built on the stack and copied stalls on store forwarding, about a tenth of the conversion) */
static inline Pair *pairs_add(Ctx *c, Pairs *ps) {
    if (ps->len == ps->cap && pairs_grow(c, ps)) return NULL;
    Pair *p = &ps->p[ps->len++];
    memset(p, 0, sizeof *p);
    return p;
}

static int pairs_push(Ctx *c, Pairs *ps, Pair pair) {
    Pair *p = pairs_add(c, ps);
    if (!p) return -1;
    *p = pair;
    return 0;
}

static uint64_t hash_key(const uint8_t *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

/* dict semantics over pairs[from:] by their keys' bytes (a JSON kvlist's): a repeated key keeps its
 * first place and takes the last value */
static int dedupe(Ctx *c, Pairs *ps, size_t from) {
    size_t n = ps->len - from;
    Pair *p = ps->p + from;
    if (n < 2) return 0;
    if (n <= 24) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (!p[j].dead && p[j].key_len == p[i].key_len && memcmp(p[j].key, p[i].key, p[i].key_len) == 0) {
                    p[j].val = p[i].val;
                    p[j].val_off = p[i].val_off;
                    p[j].val_len = p[i].val_len;
                    p[i].dead = 1;
                    break;
                }
        return 0;
    }
    size_t size = 64;
    while (size < 2 * n) size *= 2;
    size_t *slots = PyMem_Calloc(size, sizeof(size_t)); /* index + 1, 0 = empty */
    if (!slots) return fail(c, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)hash_key(p[i].key, p[i].key_len) & (size - 1);
        for (;;) {
            size_t s = slots[h];
            if (!s) {
                slots[h] = i + 1;
                break;
            }
            Pair *q = &p[s - 1];
            if (q->key_len == p[i].key_len && memcmp(q->key, p[i].key, p[i].key_len) == 0) {
                q->val = p[i].val;
                q->val_off = p[i].val_off;
                q->val_len = p[i].val_len;
                p[i].dead = 1;
                break;
            }
            h = (h + 1) & (size - 1);
        }
    }
    PyMem_Free(slots);
    return 0;
}

/* ---- LowCardinality dictionaries ------------------------------------------------------------ */

/* what a map key means to the block's MATERIALIZED columns (native_ingest.DERIVED) and ServiceName */
enum { R_NONE, R_NODE, R_CODEV, R_SEQ, R_SEQ_END, R_CHILD, R_HLC_OFF, R_HLC_END_OFF, R_SERVICE };

static uint8_t key_role(const uint8_t *s, size_t n) {
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(s, lit, n) == 0)
    if (IS("execscope.node_id")) return R_NODE;
    if (IS("execscope.code_version")) return R_CODEV;
    if (IS("execscope.seq")) return R_SEQ;
    if (IS("execscope.seq.end")) return R_SEQ_END;
    if (IS("execscope.child_ns")) return R_CHILD;
    if (IS("execscope.hlc.offset")) return R_HLC_OFF;
    if (IS("execscope.hlc.end_offset")) return R_HLC_END_OFF;
    if (IS("service.name")) return R_SERVICE;
#undef IS
    return R_NONE;
}

typedef struct {
    size_t off;
    uint32_t len, hash;
    uint8_t role; /* key_role */
} Key;

/* one column's dictionary for one block: "" is key 0 (as the engine writes it), then first use order */
typedef struct {
    Buf raw;         /* the keys' bytes */
    Buf keys;        /* Key per key */
    uint32_t *slots; /* open addressing: key index + 1, 0 = empty */
    size_t cap;      /* slots, a power of two, at least twice the keys */
    uint32_t n;
    /* deduplication of one map's keys by index (dedupe_keys): per key, the serial of the map that
     * last had it and its place there */
    uint32_t *stamp, *where;
    size_t scap;
    uint32_t serial;
} Dict;

static inline uint32_t hash32(const uint8_t *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

static void dict_reset(Dict *d) {
    d->raw.len = d->keys.len = 0;
    d->n = 0;
    if (d->slots) memset(d->slots, 0, d->cap * sizeof *d->slots);
}

static void dict_free(Dict *d) {
    PyMem_Free(d->raw.p);
    PyMem_Free(d->keys.p);
    PyMem_Free(d->slots);
    PyMem_Free(d->stamp);
    PyMem_Free(d->where);
}

static int dict_add(Ctx *c, Dict *d, const uint8_t *s, size_t n, uint32_t h, uint32_t *out) {
    if (n > UINT32_MAX || d->n >= UINT32_MAX - 1) return fail(c, "dictionary too large");
    if ((size_t)(d->n + 1) * 2 > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        uint32_t *slots = PyMem_Calloc(cap, sizeof *slots);
        if (!slots) return fail(c, "out of memory");
        const Key *ks = (const Key *)d->keys.p;
        for (uint32_t i = 0; i < d->n; i++) {
            size_t j = ks[i].hash & (cap - 1);
            while (slots[j]) j = (j + 1) & (cap - 1);
            slots[j] = i + 1;
        }
        PyMem_Free(d->slots);
        d->slots = slots;
        d->cap = cap;
    }
    if (d->n >= d->scap) { /* the stamps of the new key (0: no map has had it) */
        size_t scap = d->scap ? d->scap * 2 : 64;
        uint32_t *stamp = PyMem_Realloc(d->stamp, scap * sizeof *stamp);
        if (!stamp) return fail(c, "out of memory");
        d->stamp = stamp;
        uint32_t *where = PyMem_Realloc(d->where, scap * sizeof *where);
        if (!where) return fail(c, "out of memory");
        d->where = where;
        memset(d->stamp + d->scap, 0, (scap - d->scap) * sizeof *stamp);
        d->scap = scap;
    }
    Key k = {d->raw.len, (uint32_t)n, h, key_role(s, n)};
    if (put(c, &d->raw, s, n) || put(c, &d->keys, &k, sizeof k)) return -1;
    size_t j = h & (d->cap - 1);
    while (d->slots[j]) j = (j + 1) & (d->cap - 1);
    d->slots[j] = d->n + 1;
    *out = d->n++;
    return 0;
}

/* back to its first n keys (convert_each leaves a payload out): removed newest first, which leaves the
 * probe table as if they had never been added */
static void dict_truncate(Dict *d, uint32_t n) {
    const Key *ks = (const Key *)d->keys.p;
    for (uint32_t i = d->n; i > n; i--) {
        size_t j = ks[i - 1].hash & (d->cap - 1);
        while (d->slots[j] != i) j = (j + 1) & (d->cap - 1);
        d->slots[j] = 0;
    }
    if (n < d->n) {
        d->raw.len = ks[n].off;
        d->keys.len = (size_t)n * sizeof(Key);
        d->n = n;
    }
}

static inline int key_is(const Dict *d, uint32_t i, const uint8_t *s, size_t n) {
    const Key *k = (const Key *)d->keys.p + i;
    return k->len == n && (n == 0 || memcmp(d->raw.p + k->off, s, n) == 0);
}

static int dict_find(Ctx *c, Dict *d, const uint8_t *s, size_t n, uint32_t *out) {
    uint32_t h, i;
    if (d->n == 0 && dict_add(c, d, (const uint8_t *)"", 0, hash32(NULL, 0), &i)) return -1;
    h = hash32(s, n);
    for (size_t j = h & (d->cap - 1); d->slots[j]; j = (j + 1) & (d->cap - 1)) {
        uint32_t at = d->slots[j] - 1;
        if (((const Key *)d->keys.p)[at].hash == h && key_is(d, at, s, n)) {
            *out = at;
            return 0;
        }
    }
    return dict_add(c, d, s, n, h, out);
}

/* one LowCardinality value: its key index appended to idx (UInt32 here, narrowed in the block).
 * hint: where this value's key was last time (keys come in the same order span after span), tried
 * with one comparison before the hash table. */
static inline int put_lc(Ctx *c, Dict *d, Buf *idx, const void *s, size_t n, uint32_t *hint) {
    uint32_t i;
    if (hint && *hint < d->n && key_is(d, *hint, (const uint8_t *)s, n)) {
        i = *hint;
    } else {
        if (dict_find(c, d, (const uint8_t *)s, n, &i)) return -1;
        if (hint) *hint = i;
    }
    return put(c, idx, &i, sizeof i);
}

static int put_json_any(Ctx *c, Buf *b, const Value *v, int depth);

/* KeyValue: key (1), value (2); a second value would be merged into the first: refused. The key
 * (the last of its occurrences) is left to the caller to check for UTF-8 (parse_kv does; add_pair
 * when the key is not one its dictionary already has); the others are checked here. */
HOT int parse_kv_raw(Ctx *c, Rd body, Rd *key, Rd *value, int *has_value) {
    key->p = key->end = body.p;
    *has_value = 0;
    int keys = 0;
    while (body.p < body.end) {
        uint32_t f;
        int wt;
        if (rd_tag(c, &body, &f, &wt)) return -1;
        if (f == 1) {
            if (keys++ && !utf8_ok(key->p, (size_t)(key->end - key->p)))
                return fail(c, "string field with invalid UTF-8");
            if (want(c, wt, WT_LEN) || rd_len(c, &body, key)) return -1;
        } else if (f == 2) {
            if (want(c, wt, WT_LEN) || rd_len(c, &body, value)) return -1;
            if ((*has_value)++) return fail(c, "repeated attribute value (merged by protobuf)");
        } else if (skip(c, &body, wt)) {
            return -1;
        }
    }
    return 0;
}

static int parse_kv(Ctx *c, Rd body, Rd *key, Rd *value, int *has_value) {
    if (parse_kv_raw(c, body, key, value, has_value)) return -1;
    return utf8_ok(key->p, (size_t)(key->end - key->p)) ? 0 : fail(c, "string field with invalid UTF-8");
}

static int put_json_kvlist(Ctx *c, Buf *b, Rd body, int depth) {
    /* values rendered into a local scratch buffer, then written in dict order */
    Pairs ps = {0};
    Buf scratch = {0};
    int rc = -1, found;
    Rd kv;
    while ((found = next_len_field(c, &body, 1, &kv)) > 0) {
        Rd key, value;
        int has_value;
        Value v;
        if (parse_kv(c, kv, &key, &value, &has_value)) goto out;
        if (has_value) {
            if (parse_any(c, value, &v)) goto out;
        } else {
            memset(&v, 0, sizeof v);
        }
        size_t off = scratch.len;
        if (put_json_any(c, &scratch, &v, depth + 1)) goto out;
        Pair pair = {.key = key.p, .key_len = (size_t)(key.end - key.p), .val_off = off, .val_len = scratch.len - off};
        if (pairs_push(c, &ps, pair)) goto out;
    }
    if (found < 0 || dedupe(c, &ps, 0) || put(c, b, "{", 1)) goto out;
    int first = 1;
    for (size_t i = 0; i < ps.len; i++) {
        if (ps.p[i].dead) continue;
        if (!first && put(c, b, ",", 1)) goto out;
        first = 0;
        if (put_json_str(c, b, ps.p[i].key, ps.p[i].key_len) || put(c, b, ":", 1) ||
            put(c, b, scratch.p + ps.p[i].val_off, ps.p[i].val_len))
            goto out;
    }
    rc = put(c, b, "}", 1);
out:
    PyMem_Free(ps.p);
    PyMem_Free(scratch.p);
    return rc;
}

static int put_json_array(Ctx *c, Buf *b, Rd body, int depth) {
    int first = 1, found;
    Rd item;
    if (put(c, b, "[", 1)) return -1;
    while ((found = next_len_field(c, &body, 1, &item)) > 0) {
        Value v;
        if (parse_any(c, item, &v)) return -1;
        if (!first && put(c, b, ",", 1)) return -1;
        first = 0;
        if (put_json_any(c, b, &v, depth + 1)) return -1;
    }
    return found < 0 ? -1 : put(c, b, "]", 1);
}

/* otlp_decode._plain(value) as json.dumps(separators=(",", ":")) writes it */
static int put_json_any(Ctx *c, Buf *b, const Value *v, int depth) {
    if (depth > MAX_DEPTH) return fail(c, "array or kvlist values nested too deep");
    double d;
    switch (v->kind) {
    case 1: return put_json_str(c, b, v->data.p, (size_t)(v->data.end - v->data.p));
    case 2: return v->scalar ? put(c, b, "true", 4) : put(c, b, "false", 5);
    case 3: return put_int64(c, b, (int64_t)v->scalar);
    case 4:
        memcpy(&d, &v->scalar, 8);
        return put_py_float_repr(c, b, d);
    case 5: return put_json_array(c, b, v->data, depth);
    case 6: return put_json_kvlist(c, b, v->data, depth);
    case 7:
        if (put(c, b, "\"", 1) || put_hex(c, b, v->data)) return -1;
        return put(c, b, "\"", 1);
    default: return put(c, b, "null", 4);
    }
}

/* otlp_decode.any_value_to_str */
static int put_any_str(Ctx *c, Buf *b, const Value *v) {
    double d;
    switch (v->kind) {
    case 1: return put(c, b, v->data.p, (size_t)(v->data.end - v->data.p));
    case 2: return v->scalar ? put(c, b, "true", 4) : put(c, b, "false", 5);
    case 3: return put_int64(c, b, (int64_t)v->scalar);
    case 4:
        memcpy(&d, &v->scalar, 8);
        return put_ch_double(c, b, d);
    case 7: return put_hex(c, b, v->data);
    case 5: case 6: return put_json_any(c, b, v, 0);
    default: return 0;
    }
}

/* ---- columns -------------------------------------------------------------------------------- */

enum {
    C_TS, C_TID, C_SID, C_PSID, C_TSTATE, C_NAME, C_KIND, C_SERVICE,
    C_RATTR_OFF, C_RATTR_K, C_RATTR_V, C_SNAME, C_SVERSION,
    C_SATTR_OFF, C_SATTR_K, C_SATTR_V, C_DURATION, C_SCODE, C_SMSG,
    C_EV_OFF, C_EV_TS, C_EV_NAME, C_EV_AOFF, C_EV_K, C_EV_V,
    C_L_OFF, C_L_TID, C_L_SID, C_L_STATE, C_L_AOFF, C_L_K, C_L_V,
    C_NODE, C_CODEV, C_SEQ, C_SEQEND, C_CHILDNS, C_HLC, C_HLCEND,
    C_COUNT
};

/* the LowCardinality columns' dictionaries, and the buffer of each one's indexes */
enum { D_NAME, D_KIND, D_SERVICE, D_RATTR, D_SATTR, D_SCODE, D_EV_NAME, D_EV_K, D_L_K, D_CODEV, D_COUNT };
static const int DICT_IDX[D_COUNT] = {C_NAME, C_KIND, C_SERVICE, C_RATTR_K, C_SATTR_K, C_SCODE,
                                      C_EV_NAME, C_EV_K, C_L_K, C_CODEV};
#define HINTS 64 /* map keys hinted by position */

typedef struct {
    Ctx c;
    Buf col[C_COUNT];
    Pairs pairs;  /* span (and event, link) attribute pairs of the one being converted */
    Buf scratch;  /* their rendered values */
    Pairs rpairs; /* resource attributes of the current ResourceSpans */
    Buf rscratch;
    uint64_t rows, events, ev_total, link_total, sattr_total, ev_attr_total, link_attr_total;
    uint64_t rattr_total;
    Pairs scopes; /* names of the scopes with spans in the current payload (convert_each) */
    Dict dict[D_COUNT];
    uint32_t hint[D_COUNT][HINTS];
    Buf lc[D_COUNT]; /* each dictionary's LowCardinality data, built by block() */
    Buf meta;        /* the block's and its columns' headers, built by block() */
} Conv;

/* One repeated KeyValue field body into ps, the pos-th pair of its map: the key interned in map key
 * dictionary d at once (tried first where the key at this place was last time, keys coming in the
 * same order map after map; a key found in the dictionary needs no UTF-8 check again), the value
 * kept in the input when a string, else rendered into scratch. */
static int add_pair(Conv *cv, Pairs *ps, Buf *scratch, Rd kv, int d, size_t pos) {
    Ctx *c = &cv->c;
    Rd key, value;
    int has_value;
    Value v;
    if (parse_kv_raw(c, kv, &key, &value, &has_value)) return -1;
    if (has_value) {
        if (parse_any(c, value, &v)) return -1;
    } else {
        memset(&v, 0, sizeof v);
    }
    size_t klen = (size_t)(key.end - key.p);
    Dict *dict = &cv->dict[d];
    uint32_t *hint = pos < HINTS ? &cv->hint[d][pos] : NULL, idx;
    if (hint && *hint < dict->n && key_is(dict, *hint, key.p, klen)) {
        idx = *hint;
    } else {
        if (!utf8_ok(key.p, klen)) return fail(c, "string field with invalid UTF-8");
        if (dict_find(c, dict, key.p, klen, &idx)) return -1;
        if (hint) *hint = idx;
    }
    const uint8_t *val = NULL;
    size_t off = scratch->len, len;
    if (v.kind == 1) { /* string_value: stored as it is */
        val = v.data.p;
        len = (size_t)(v.data.end - v.data.p);
    } else {
        if (put_any_str(c, scratch, &v)) return -1;
        len = scratch->len - off;
    }
    Pair *pair = pairs_add(c, ps);
    if (!pair) return -1;
    pair->key = key.p;
    pair->key_len = klen;
    pair->key_idx = idx;
    pair->val = val;
    pair->val_off = off;
    pair->val_len = len;
    return 0;
}

/* dict semantics over pairs[from:] (their keys interned in dictionary d), by key index: a repeated
 * key keeps its first place and takes the last value */
static int dedupe_keys(Conv *cv, int d, Pairs *ps, size_t from) {
    Dict *dict = &cv->dict[d];
    size_t n = ps->len - from;
    Pair *p = ps->p + from;
    if (n < 2) return 0;
    if (n >= UINT32_MAX) return fail(&cv->c, "map too large");
    if (++dict->serial == 0) { /* wrapped: every stamp is older than 1 */
        memset(dict->stamp, 0, dict->scap * sizeof *dict->stamp);
        dict->serial = 1;
    }
    uint32_t serial = dict->serial;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = p[i].key_idx;
        if (dict->stamp[k] == serial) {
            Pair *q = &p[dict->where[k]];
            q->val = p[i].val;
            q->val_off = p[i].val_off;
            q->val_len = p[i].val_len;
            p[i].dead = 1;
        } else {
            dict->stamp[k] = serial;
            dict->where[k] = (uint32_t)i;
        }
    }
    return 0;
}

/* write pairs[from:] (deduplicated) as one Map row: returns the number of entries written */
static int put_map(Conv *cv, Pairs *ps, size_t from, const Buf *scratch, int d, Buf *keys, Buf *vals, uint64_t *n_out) {
    Ctx *c = &cv->c;
    uint64_t n = 0;
    if (dedupe_keys(cv, d, ps, from) || buf_reserve(c, keys, (ps->len - from) * sizeof(uint32_t))) return -1;
    uint32_t *kw = (uint32_t *)(keys->p + keys->len);
    for (size_t i = from; i < ps->len; i++) {
        const Pair *p = &ps->p[i];
        if (p->dead) continue;
        if (put_str(c, vals, pair_val(p, scratch), p->val_len)) return -1;
        kw[n++] = p->key_idx;
    }
    keys->len += n * sizeof(uint32_t);
    *n_out = n;
    return 0;
}

/* ClickHouse's toUInt64OrZero: optional '+', decimal digits only, 0 on anything else or overflow */
static uint64_t to_u64_or_zero(const char *s, size_t n) {
    size_t i = 0;
    if (n && s[0] == '+') i = 1;
    if (i == n) return 0;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    return v;
}

static uint64_t pair_u64(const Conv *cv, const Pair *p) {
    return p ? to_u64_or_zero(pair_val(p, &cv->scratch), p->val_len) : 0;
}

static int put_pair_str(Conv *cv, Buf *b, const Pair *p) {
    return p ? put_str(&cv->c, b, pair_val(p, &cv->scratch), p->val_len) : put_str(&cv->c, b, "", 0);
}

static int put_pair_lc(Conv *cv, int d, const Pair *p) {
    return p ? put_lc(&cv->c, &cv->dict[d], &cv->col[DICT_IDX[d]], pair_val(p, &cv->scratch), p->val_len, &cv->hint[d][0])
             : put_lc(&cv->c, &cv->dict[d], &cv->col[DICT_IDX[d]], "", 0, &cv->hint[d][0]);
}

/* The end of an event or a link: its attributes (the pairs from ``from`` on, then dropped) into its
 * nested map columns, one more row counted in ``count`` and its attributes' end offset in
 * ``attr_total`` written to ``off_col`` (the Nested columns' array offsets). */
static int put_nested_attrs(Conv *cv, size_t from, int d, int key_col, int val_col, int off_col,
                            uint64_t *attr_total, uint64_t *count) {
    uint64_t n;
    if (put_map(cv, &cv->pairs, from, &cv->scratch, d, &cv->col[key_col], &cv->col[val_col], &n)) return -1;
    cv->pairs.len = from;
    *attr_total += n;
    (*count)++;
    return put_u64(&cv->c, &cv->col[off_col], *attr_total);
}

/* otel_traces' times are DateTime64(9): signed nanoseconds, the last 2262-04-11 23:47:16.854775807.
 * A span or event time beyond it is refused (as otlp_decode does), never stored wrapped to 1677. */
#define MAX_TIME_NS ((uint64_t)INT64_MAX)
#define TIME_RANGE_ERROR "span or event time beyond 2262-04-11 (2^63 ns), outside otel_traces' DateTime64(9)"

static int span_event(Conv *cv, Rd body) {
    Ctx *c = &cv->c;
    uint64_t ts = 0;
    Rd name = {body.p, body.p};
    size_t from = cv->pairs.len;
    while (body.p < body.end) {
        uint32_t f;
        int wt;
        Rd sub;
        if (rd_tag(c, &body, &f, &wt)) return -1;
        if (f == 1) {
            if (want(c, wt, WT_I64) || rd_fixed64(c, &body, &ts)) return -1;
        } else if (f == 2) {
            if (want(c, wt, WT_LEN) || rd_string(c, &body, &name)) return -1;
        } else if (f == 3) {
            if (want(c, wt, WT_LEN) || rd_len(c, &body, &sub) ||
                add_pair(cv, &cv->pairs, &cv->scratch, sub, D_EV_K, cv->pairs.len - from))
                return -1;
        } else if (skip(c, &body, wt)) {
            return -1;
        }
    }
    if (ts > MAX_TIME_NS) return fail(c, TIME_RANGE_ERROR);
    if (put_u64(c, &cv->col[C_EV_TS], ts) ||
        put_lc(c, &cv->dict[D_EV_NAME], &cv->col[C_EV_NAME], name.p, (size_t)(name.end - name.p), &cv->hint[D_EV_NAME][0]))
        return -1;
    return put_nested_attrs(cv, from, D_EV_K, C_EV_K, C_EV_V, C_EV_AOFF, &cv->ev_attr_total, &cv->ev_total);
}

static int span_link(Conv *cv, Rd body) {
    Ctx *c = &cv->c;
    Rd tid = {body.p, body.p}, sid = tid, state = tid, sub;
    size_t from = cv->pairs.len;
    while (body.p < body.end) {
        uint32_t f;
        int wt;
        if (rd_tag(c, &body, &f, &wt)) return -1;
        if (f == 1 || f == 2) {
            if (want(c, wt, WT_LEN) || rd_len(c, &body, f == 1 ? &tid : &sid)) return -1;
        } else if (f == 3) {
            if (want(c, wt, WT_LEN) || rd_string(c, &body, &state)) return -1;
        } else if (f == 4) {
            if (want(c, wt, WT_LEN) || rd_len(c, &body, &sub) ||
                add_pair(cv, &cv->pairs, &cv->scratch, sub, D_L_K, cv->pairs.len - from))
                return -1;
        } else if (skip(c, &body, wt)) {
            return -1;
        }
    }
    if (put_hex_str(c, &cv->col[C_L_TID], tid.p, (size_t)(tid.end - tid.p)) ||
        put_hex_str(c, &cv->col[C_L_SID], sid.p, (size_t)(sid.end - sid.p)) ||
        put_str(c, &cv->col[C_L_STATE], state.p, (size_t)(state.end - state.p)))
        return -1;
    return put_nested_attrs(cv, from, D_L_K, C_L_K, C_L_V, C_L_AOFF, &cv->link_attr_total, &cv->link_total);
}

static const char *const KINDS[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
                                    "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"};
static const char *const STATUSES[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"};

typedef struct {
    Rd name, version;
} Scope;

typedef struct {
    const uint8_t *rattr_keys, *rattr_vals; /* the resource map, rendered once per ResourceSpans */
    size_t rattr_keys_len, rattr_vals_len;
    uint64_t rattr_n;
    Rd service;
} Resource;

static int span(Conv *cv, Rd body, const Scope *scope, const Resource *res) {
    Ctx *c = &cv->c;
    Rd empty = {body.p, body.p};
    Rd tid = empty, sid = empty, psid = empty, state = empty, name = empty, msg = empty, sub;
    uint64_t kind = 0, code = 0, start = 0, end = 0;
    uint64_t ev_before = cv->ev_total;
    cv->pairs.len = 0;
    cv->scratch.len = 0;
    while (body.p < body.end) {
        uint32_t f;
        int wt;
        if (rd_tag(c, &body, &f, &wt)) return -1;
        switch (f) {
        case 1: case 2: case 4:
            if (want(c, wt, WT_LEN) || rd_len(c, &body, f == 1 ? &tid : f == 2 ? &sid : &psid)) return -1;
            break;
        case 3: case 5:
            if (want(c, wt, WT_LEN) || rd_string(c, &body, f == 3 ? &state : &name)) return -1;
            break;
        case 6:
            if (want(c, wt, WT_VARINT) || rd_varint(c, &body, &kind)) return -1;
            break;
        case 7: case 8:
            if (want(c, wt, WT_I64) || rd_fixed64(c, &body, f == 7 ? &start : &end)) return -1;
            break;
        case 9:
            if (want(c, wt, WT_LEN) || rd_len(c, &body, &sub) ||
                add_pair(cv, &cv->pairs, &cv->scratch, sub, D_SATTR, cv->pairs.len))
                return -1;
            break;
        case 11: case 13: {
            /* events and links keep their own pairs above the span's: convert them now, with the
             * span's pairs so far parked below */
            size_t keep = cv->pairs.len;
            if (want(c, wt, WT_LEN) || rd_len(c, &body, &sub) || (f == 11 ? span_event(cv, sub) : span_link(cv, sub))) return -1;
            cv->pairs.len = keep;
            break;
        }
        case 15: { /* Status: message 2, code 3; a repeated status merges field by field */
            if (want(c, wt, WT_LEN) || rd_len(c, &body, &sub)) return -1;
            while (sub.p < sub.end) {
                uint32_t g;
                int wt2;
                if (rd_tag(c, &sub, &g, &wt2)) return -1;
                if (g == 2) {
                    if (want(c, wt2, WT_LEN) || rd_string(c, &sub, &msg)) return -1;
                } else if (g == 3) {
                    if (want(c, wt2, WT_VARINT) || rd_varint(c, &sub, &code)) return -1;
                } else if (skip(c, &sub, wt2)) {
                    return -1;
                }
            }
            break;
        }
        default:
            if (skip(c, &body, wt)) return -1;
        }
    }
    if (tid.end - tid.p != 16 || sid.end - sid.p != 8) return fail(c, "span with a malformed trace or span id");
    if (start > MAX_TIME_NS || end > MAX_TIME_NS) return fail(c, TIME_RANGE_ERROR);
    int32_t k32 = (int32_t)(uint32_t)kind, s32 = (int32_t)(uint32_t)code;
    const char *kind_s = (k32 >= 0 && k32 < 6) ? KINDS[k32] : KINDS[0];
    const char *code_s = (s32 >= 0 && s32 < 3) ? STATUSES[s32] : STATUSES[0];
    uint64_t duration = end > start ? end - start : 0, n;
    Buf *col = cv->col;
    if (put_u64(c, &col[C_TS], start) || put_hex_str(c, &col[C_TID], tid.p, 16) ||
        put_hex_str(c, &col[C_SID], sid.p, 8) || put_hex_str(c, &col[C_PSID], psid.p, (size_t)(psid.end - psid.p)) ||
        put_str(c, &col[C_TSTATE], state.p, (size_t)(state.end - state.p)) ||
        put_lc(c, &cv->dict[D_NAME], &col[C_NAME], name.p, (size_t)(name.end - name.p), &cv->hint[D_NAME][0]) ||
        put_lc(c, &cv->dict[D_KIND], &col[C_KIND], kind_s, strlen(kind_s), &cv->hint[D_KIND][0]) ||
        put_lc(c, &cv->dict[D_SERVICE], &col[C_SERVICE], res->service.p, (size_t)(res->service.end - res->service.p),
               &cv->hint[D_SERVICE][0]) ||
        put(c, &col[C_RATTR_K], res->rattr_keys, res->rattr_keys_len) ||
        put(c, &col[C_RATTR_V], res->rattr_vals, res->rattr_vals_len) ||
        put_str(c, &col[C_SNAME], scope->name.p, (size_t)(scope->name.end - scope->name.p)) ||
        put_str(c, &col[C_SVERSION], scope->version.p, (size_t)(scope->version.end - scope->version.p)) ||
        put_map(cv, &cv->pairs, 0, &cv->scratch, D_SATTR, &col[C_SATTR_K], &col[C_SATTR_V], &n) ||
        put_u64(c, &col[C_DURATION], duration) ||
        put_lc(c, &cv->dict[D_SCODE], &col[C_SCODE], code_s, strlen(code_s), &cv->hint[D_SCODE][0]) ||
        put_str(c, &col[C_SMSG], msg.p, (size_t)(msg.end - msg.p)))
        return -1;
    cv->sattr_total += n;
    cv->rattr_total += res->rattr_n;
    cv->rows++;
    cv->events += cv->ev_total - ev_before;
    /* native_ingest.DERIVED, over the deduplicated attributes */
    const Pair *node = NULL, *codev = NULL, *seq = NULL, *seq_end = NULL, *child = NULL, *off = NULL, *end_off = NULL;
    const Key *keys = (const Key *)cv->dict[D_SATTR].keys.p;
    for (size_t i = 0; i < cv->pairs.len; i++) {
        const Pair *p = &cv->pairs.p[i];
        if (p->dead) continue;
        switch (keys[p->key_idx].role) {
        case R_NODE: node = p; break;
        case R_CODEV: codev = p; break;
        case R_SEQ: seq = p; break;
        case R_SEQ_END: seq_end = p; break;
        case R_CHILD: child = p; break;
        case R_HLC_OFF: off = p; break;
        case R_HLC_END_OFF: end_off = p; break;
        default: break;
        }
    }
    uint64_t hlc = start + pair_u64(cv, off);
    uint64_t hlc_end = start + duration + pair_u64(cv, end_off ? end_off : off);
    if (put_u64(c, &col[C_RATTR_OFF], cv->rattr_total) || put_u64(c, &col[C_SATTR_OFF], cv->sattr_total) ||
        put_u64(c, &col[C_EV_OFF], cv->ev_total) || put_u64(c, &col[C_L_OFF], cv->link_total) ||
        put_pair_str(cv, &col[C_NODE], node) || put_pair_lc(cv, D_CODEV, codev) ||
        put_u64(c, &col[C_SEQ], pair_u64(cv, seq)) || put_u64(c, &col[C_SEQEND], pair_u64(cv, seq_end)) ||
        put_u64(c, &col[C_CHILDNS], pair_u64(cv, child)) || put_u64(c, &col[C_HLC], hlc) ||
        put_u64(c, &col[C_HLCEND], hlc_end))
        return -1;
    return 0;
}

/* ScopeSpans: the scope (1) and the spans (2) in one pass, in wire order. A scope that comes after
 * some of its spans (repeated scopes merge, wherever they are) rewrites those spans' ScopeName and
 * ScopeVersion once the message is read: every span has the merged scope, as protobuf reads it. One
 * pass instead of a search for the scope first: that search touched every span's first bytes out of
 * reach of the prefetcher (about a tenth of the conversion). */
static int scope_spans(Conv *cv, Rd body, const Resource *res) {
    Ctx *c = &cv->c;
    Scope scope = {{body.p, body.p}, {body.p, body.p}};
    Rd r = body, sub;
    uint64_t rows_before = cv->rows;
    size_t name_len = cv->col[C_SNAME].len, version_len = cv->col[C_SVERSION].len;
    int late = 0;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        if (rd_tag(c, &r, &f, &wt)) return -1;
        if (f == 1) {
            if (want(c, wt, WT_LEN) || rd_len(c, &r, &sub)) return -1;
            late |= cv->rows > rows_before;
            while (sub.p < sub.end) { /* InstrumentationScope: name 1, version 2; repeats merge */
                uint32_t g;
                int wt2;
                if (rd_tag(c, &sub, &g, &wt2)) return -1;
                if (g == 1 || g == 2) {
                    if (want(c, wt2, WT_LEN) || rd_string(c, &sub, g == 1 ? &scope.name : &scope.version)) return -1;
                } else if (skip(c, &sub, wt2)) {
                    return -1;
                }
            }
        } else if (f == 2) {
            if (want(c, wt, WT_LEN) || rd_len(c, &r, &sub) || span(cv, sub, &scope, res)) return -1;
        } else if (skip(c, &r, wt)) {
            return -1;
        }
    }
    if (late) {
        cv->col[C_SNAME].len = name_len;
        cv->col[C_SVERSION].len = version_len;
        for (uint64_t i = rows_before; i < cv->rows; i++)
            if (put_str(c, &cv->col[C_SNAME], scope.name.p, (size_t)(scope.name.end - scope.name.p)) ||
                put_str(c, &cv->col[C_SVERSION], scope.version.p, (size_t)(scope.version.end - scope.version.p)))
                return -1;
    }
    if (cv->rows > rows_before) {
        Pair name = {.key = scope.name.p, .key_len = (size_t)(scope.name.end - scope.name.p)};
        if (pairs_push(c, &cv->scopes, name)) return -1;
    }
    return 0;
}

/* ResourceSpans: the resource (1) first, wherever it is on the wire, then every ScopeSpans (2) */
static int resource_spans(Conv *cv, Rd body) {
    Ctx *c = &cv->c;
    Rd r = body, sub;
    int found;
    cv->rpairs.len = 0;
    cv->rscratch.len = 0;
    while ((found = next_len_field(c, &r, 1, &sub)) > 0) {
        while (sub.p < sub.end) { /* Resource: attributes 1 (repeated resources merge: appended) */
            uint32_t g;
            int wt2;
            Rd kv;
            if (rd_tag(c, &sub, &g, &wt2)) return -1;
            if (g == 1) {
                if (want(c, wt2, WT_LEN) || rd_len(c, &sub, &kv) ||
                    add_pair(cv, &cv->rpairs, &cv->rscratch, kv, D_RATTR, cv->rpairs.len))
                    return -1;
            } else if (skip(c, &sub, wt2)) {
                return -1;
            }
        }
    }
    if (found < 0) return -1;
    /* the map's key indexes and values as Native strings, copied into every row of this resource */
    Buf keys = {0}, vals = {0};
    Resource res;
    memset(&res, 0, sizeof res);
    int rc = -1;
    if (put_map(cv, &cv->rpairs, 0, &cv->rscratch, D_RATTR, &keys, &vals, &res.rattr_n)) goto out;
    res.rattr_keys = (const uint8_t *)keys.p;
    res.rattr_keys_len = keys.len;
    res.rattr_vals = (const uint8_t *)vals.p;
    res.rattr_vals_len = vals.len;
    res.service.p = res.service.end = body.p;
    const Key *rkeys = (const Key *)cv->dict[D_RATTR].keys.p;
    for (size_t i = 0; i < cv->rpairs.len; i++) {
        const Pair *p = &cv->rpairs.p[i];
        if (!p->dead && rkeys[p->key_idx].role == R_SERVICE) {
            res.service.p = (const uint8_t *)pair_val(p, &cv->rscratch);
            res.service.end = res.service.p + p->val_len;
        }
    }
    r = body;
    while ((found = next_len_field(c, &r, 2, &sub)) > 0) {
        if (scope_spans(cv, sub, &res)) goto out;
    }
    rc = found < 0 ? -1 : 0;
out:
    PyMem_Free(keys.p);
    PyMem_Free(vals.p);
    return rc;
}

static int request(Conv *cv, const uint8_t *data, size_t n) {
    Ctx *c = &cv->c;
    Rd r = {data, data + n}, sub;
    int found;
    while ((found = next_len_field(c, &r, 1, &sub)) > 0) {
        if (resource_spans(cv, sub)) return -1;
    }
    return found < 0 ? -1 : 0;
}

/* ---- the block ------------------------------------------------------------------------------ */

typedef struct {
    const char *name, *type;
    int parts[5]; /* buffers written one after the other (LC(d): dictionary d's data), -1 ends */
} Column;

#define LC(d) (1000 + (d))
#define LCS "LowCardinality(String)"
#define MAP "Map(" LCS ", String)"
static const Column COLUMNS[] = {
    {"Timestamp", "DateTime64(9)", {C_TS, -1}},
    {"TraceId", "String", {C_TID, -1}},
    {"SpanId", "String", {C_SID, -1}},
    {"ParentSpanId", "String", {C_PSID, -1}},
    {"TraceState", "String", {C_TSTATE, -1}},
    {"SpanName", LCS, {LC(D_NAME), -1}},
    {"SpanKind", LCS, {LC(D_KIND), -1}},
    {"ServiceName", LCS, {LC(D_SERVICE), -1}},
    {"ResourceAttributes", MAP, {C_RATTR_OFF, LC(D_RATTR), C_RATTR_V, -1}},
    {"ScopeName", "String", {C_SNAME, -1}},
    {"ScopeVersion", "String", {C_SVERSION, -1}},
    {"SpanAttributes", MAP, {C_SATTR_OFF, LC(D_SATTR), C_SATTR_V, -1}},
    {"Duration", "UInt64", {C_DURATION, -1}},
    {"StatusCode", LCS, {LC(D_SCODE), -1}},
    {"StatusMessage", "String", {C_SMSG, -1}},
    {"Events.Timestamp", "Array(DateTime64(9))", {C_EV_OFF, C_EV_TS, -1}},
    {"Events.Name", "Array(" LCS ")", {C_EV_OFF, LC(D_EV_NAME), -1}},
    {"Events.Attributes", "Array(" MAP ")", {C_EV_OFF, C_EV_AOFF, LC(D_EV_K), C_EV_V, -1}},
    {"Links.TraceId", "Array(String)", {C_L_OFF, C_L_TID, -1}},
    {"Links.SpanId", "Array(String)", {C_L_OFF, C_L_SID, -1}},
    {"Links.TraceState", "Array(String)", {C_L_OFF, C_L_STATE, -1}},
    {"Links.Attributes", "Array(" MAP ")", {C_L_OFF, C_L_AOFF, LC(D_L_K), C_L_V, -1}},
    {"NodeId", "String", {C_NODE, -1}},
    {"CodeVersion", LCS, {LC(D_CODEV), -1}},
    {"Seq", "UInt64", {C_SEQ, -1}},
    {"SeqEnd", "UInt64", {C_SEQEND, -1}},
    {"ChildNs", "UInt64", {C_CHILDNS, -1}},
    {"Hlc", "UInt64", {C_HLC, -1}},
    {"HlcEnd", "UInt64", {C_HLCEND, -1}},
};
#define N_COLUMNS (sizeof COLUMNS / sizeof COLUMNS[0])

/* dictionary d's LowCardinality data (see the top of the file) into cv->lc[d]: nothing without values */
static int lc_data(Conv *cv, int d) {
    Ctx *c = &cv->c;
    Buf *out = &cv->lc[d];
    const Buf *idx = &cv->col[DICT_IDX[d]];
    const Dict *dict = &cv->dict[d];
    size_t rows = idx->len / sizeof(uint32_t);
    out->len = 0;
    if (rows == 0) return 0;
    int width = dict->n <= 0x100 ? 1 : dict->n <= 0x10000 ? 2 : 4;
    if (put_u64(c, out, (uint64_t)(width == 1 ? 0 : width == 2 ? 1 : 2) | 0x600) || put_u64(c, out, dict->n)) return -1;
    const Key *ks = (const Key *)dict->keys.p;
    for (uint32_t i = 0; i < dict->n; i++)
        if (put_str(c, out, dict->raw.p + ks[i].off, ks[i].len)) return -1;
    if (put_u64(c, out, rows) || buf_reserve(c, out, rows * (size_t)width)) return -1;
    const uint32_t *v = (const uint32_t *)idx->p;
    unsigned char *w = (unsigned char *)out->p + out->len;
    for (size_t r = 0; r < rows; r++) {
        uint32_t x = v[r];
        w[0] = (unsigned char)x;
        if (width > 1) w[1] = (unsigned char)(x >> 8);
        if (width > 2) {
            w[2] = (unsigned char)(x >> 16);
            w[3] = (unsigned char)(x >> 24);
        }
        w += width;
    }
    out->len += rows * (size_t)width;
    return 0;
}

static inline const Buf *part(const Conv *cv, int k) { return k >= LC(0) ? &cv->lc[k - LC(0)] : &cv->col[k]; }

/* The block as pieces in order: the block and column headers (in cv->meta), then the column data in
 * place in the converter's buffers; written out by block() (bytes) or block_to_fd() (a file). */
typedef struct {
    const char *p;
    size_t off, n; /* p NULL until resolved: at off in cv->meta */
} Piece;
#define MAX_PIECES (N_COLUMNS * 6)

static int pieces(Conv *cv, Piece *ps, size_t *count, size_t *total) {
    Ctx *c = &cv->c;
    static const char LC_PREFIX[8] = {1, 0, 0, 0, 0, 0, 0, 0}; /* SharedDictionariesWithAdditionalKeys */
    Buf *meta = &cv->meta;
    size_t n = 0, at = 0, sum = 0;
    meta->len = 0;
    if (put_varint(c, meta, N_COLUMNS) || put_varint(c, meta, cv->rows)) return -1;
    for (int d = 0; d < D_COUNT; d++)
        if (lc_data(cv, d)) return -1;
    for (size_t i = 0; i < N_COLUMNS; i++) {
        int has_lc = 0;
        for (const int *k = COLUMNS[i].parts; *k >= 0; k++) has_lc |= *k >= LC(0);
        if (put_str(c, meta, COLUMNS[i].name, strlen(COLUMNS[i].name)) ||
            put_str(c, meta, COLUMNS[i].type, strlen(COLUMNS[i].type)) ||
            (has_lc && put(c, meta, LC_PREFIX, sizeof LC_PREFIX))) /* before the column's offsets */
            return -1;
        ps[n++] = (Piece){NULL, at, meta->len - at};
        at = meta->len;
        for (const int *k = COLUMNS[i].parts; *k >= 0; k++) {
            const Buf *b = part(cv, *k);
            if (b->len) ps[n++] = (Piece){b->p, 0, b->len};
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!ps[i].p) ps[i].p = meta->p + ps[i].off;
        sum += ps[i].n;
    }
    *count = n;
    *total = sum;
    return 0;
}

static PyObject *block(Conv *cv) {
    Piece ps[MAX_PIECES];
    size_t n, total;
    if (pieces(cv, ps, &n, &total)) return PyErr_NoMemory();
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!out) return NULL;
    char *w = PyBytes_AS_STRING(out);
    for (size_t i = 0; i < n; i++) {
        memcpy(w, ps[i].p, ps[i].n);
        w += ps[i].n;
    }
    return out;
}

/* the block written to fd, whole (partial writes continued), the GIL released meanwhile (the
 * converter's buffers are this call's own). -1 with errno set on a failing write. */
static int block_to_fd(Conv *cv, int fd, size_t *written) {
    Piece ps[MAX_PIECES];
    struct iovec iov[MAX_PIECES];
    size_t n, total, first = 0, done = 0;
    if (pieces(cv, ps, &n, &total)) {
        errno = ENOMEM;
        return -1;
    }
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS
    while (first < n) {
        int k = 0;
        for (size_t i = first; i < n && k < (int)MAX_PIECES; i++, k++) {
            iov[k].iov_base = (void *)(ps[i].p + (i == first ? done : 0));
            iov[k].iov_len = ps[i].n - (i == first ? done : 0);
        }
        ssize_t w = writev(fd, iov, k);
        if (w < 0) {
            if (errno == EINTR) continue;
            rc = -1;
            break;
        }
        size_t left = (size_t)w;
        while (first < n && left >= ps[first].n - done) { /* whole pieces written */
            left -= ps[first].n - done;
            done = 0;
            first++;
        }
        done += left;
    }
    Py_END_ALLOW_THREADS
    *written = total;
    return rc;
}

static void conv_free(Conv *cv) {
    for (int i = 0; i < C_COUNT; i++) PyMem_Free(cv->col[i].p);
    PyMem_Free(cv->pairs.p);
    PyMem_Free(cv->scratch.p);
    PyMem_Free(cv->rpairs.p);
    PyMem_Free(cv->rscratch.p);
    PyMem_Free(cv->scopes.p);
    for (int d = 0; d < D_COUNT; d++) {
        dict_free(&cv->dict[d]);
        PyMem_Free(cv->lc[d].p);
    }
    PyMem_Free(cv->meta.p);
}

PyDoc_STRVAR(convert_doc,
"convert(payloads) -> (block, spans, events)\n\n"
"One ClickHouse Native block of otel_traces rows (the columns of COLUMNS) from serialized OTLP\n"
"ExportTraceServiceRequest payloads (a sequence of bytes, or of objects with a buffer: memoryview,\n"
"mmap). Raises ValueError naming the payload and the reason when one is not taken exactly as the\n"
"Python decoder would take it.");

/* One converter's buffers kept between calls (up to KEEP_BYTES): a batch's columns are megabytes, and
 * fresh memory for each batch costs a page fault per 4 KiB (a tenth of the time). The GIL (held
 * throughout, no Python code runs meanwhile) makes the cache safe; a call that finds it taken
 * (never, under the GIL) would allocate its own. */
#define KEEP_BYTES ((size_t)256 << 20)
static Conv *cached;

static Conv *conv_take(void) {
    Conv *cv = cached;
    cached = NULL;
    if (!cv) return PyMem_Calloc(1, sizeof(Conv));
    for (int i = 0; i < C_COUNT; i++) cv->col[i].len = 0;
    cv->pairs.len = cv->rpairs.len = cv->scopes.len = 0;
    cv->scratch.len = cv->rscratch.len = 0;
    for (int d = 0; d < D_COUNT; d++) dict_reset(&cv->dict[d]);
    cv->c.err = NULL;
    cv->rows = cv->events = cv->ev_total = cv->link_total = cv->sattr_total = 0;
    cv->ev_attr_total = cv->link_attr_total = cv->rattr_total = 0;
    return cv;
}

static void conv_give_back(Conv *cv) {
    size_t held = 0;
    for (int i = 0; i < C_COUNT; i++) held += cv->col[i].cap;
    for (int d = 0; d < D_COUNT; d++) held += cv->dict[d].raw.cap + cv->dict[d].keys.cap + cv->lc[d].cap;
    if (cached == NULL && held <= KEEP_BYTES) {
        cached = cv;
        return;
    }
    conv_free(cv);
    PyMem_Free(cv);
}

/* payload i's bytes: bytes, or any object with a buffer (a memoryview, an mmap of a spool file, read
 * in place); released after the payload is converted (nothing of it is kept: dictionary keys are
 * copied). 0, or -1 with TypeError. */
static int payload_view(PyObject *item, Py_ssize_t i, Py_buffer *view) {
    if (PyObject_GetBuffer(item, view, PyBUF_SIMPLE) == 0) return 0;
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "payload %zd is %.80s, not bytes", i, Py_TYPE(item)->tp_name);
    return -1;
}

/* every payload of seq into cv; -1 with a Python error set */
static int convert_all(Conv *cv, PyObject *seq) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_buffer view;
        if (payload_view(PySequence_Fast_GET_ITEM(seq, i), i, &view)) return -1;
        int rc = request(cv, (const uint8_t *)view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
        if (rc) {
            if (strcmp(cv->c.err, "out of memory") == 0) {
                PyErr_NoMemory();
            } else {
                PyErr_Format(PyExc_ValueError, "payload %zd: not taken as an OTLP ExportTraceServiceRequest: %s",
                             i, cv->c.err);
            }
            return -1;
        }
    }
    return 0;
}

static PyObject *convert(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "convert() takes a sequence of bytes");
    if (!seq) return NULL;
    Conv *cv = conv_take();
    if (!cv) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    if (convert_all(cv, seq) == 0) {
        PyObject *blk = block(cv);
        if (blk) result = Py_BuildValue("(NKK)", blk, (unsigned long long)cv->rows, (unsigned long long)cv->events);
    }
    conv_give_back(cv);
    Py_DECREF(seq);
    return result;
}

PyDoc_STRVAR(convert_into_doc,
"convert_into(payloads, fd) -> (spans, events, size)\n\n"
"As convert, the block written to the file descriptor fd (from its current position) instead of\n"
"returned: no copy of it in memory. ValueError (nothing written) as convert; OSError when a write\n"
"fails (the file then holds part of the block: the caller discards it).");

static PyObject *convert_into(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *arg;
    int fd;
    if (!PyArg_ParseTuple(args, "Oi:convert_into", &arg, &fd)) return NULL;
    PyObject *seq = PySequence_Fast(arg, "convert_into() takes a sequence of bytes");
    if (!seq) return NULL;
    Conv *cv = conv_take();
    if (!cv) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    size_t size;
    if (convert_all(cv, seq) == 0) {
        if (block_to_fd(cv, fd, &size)) {
            PyErr_SetFromErrno(PyExc_OSError);
        } else {
            result = Py_BuildValue("(KKK)", (unsigned long long)cv->rows, (unsigned long long)cv->events,
                                   (unsigned long long)size);
        }
    }
    conv_give_back(cv);
    Py_DECREF(seq);
    return result;
}

/* the distinct scope names of cv->scopes, as a tuple of str */
static PyObject *scope_names(Conv *cv) {
    PyObject *names = PyTuple_New(0);
    for (size_t i = 0; names && i < cv->scopes.len; i++) {
        const Pair *p = &cv->scopes.p[i];
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = cv->scopes.p[j].key_len == p->key_len && memcmp(cv->scopes.p[j].key, p->key, p->key_len) == 0;
        if (seen) continue;
        PyObject *name = PyUnicode_DecodeUTF8((const char *)p->key, (Py_ssize_t)p->key_len, "strict");
        Py_ssize_t n = PyTuple_GET_SIZE(names);
        if (!name || _PyTuple_Resize(&names, n + 1) < 0) {
            Py_XDECREF(name);
            Py_XDECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, n, name);
    }
    return names;
}

PyDoc_STRVAR(convert_each_doc,
"convert_each(payloads) -> (block, spans, events, results)\n\n"
"As convert, payload by payload: a payload the converter does not take is left out of the block\n"
"(nothing of it written) and its result is the reason (str); any other payload's result is\n"
"(spans, scope names: the distinct names of its scopes that have spans).");

static PyObject *convert_each(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "convert_each() takes a sequence of bytes");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *results = PyList_New(n), *result = NULL;
    Conv *cv = results ? conv_take() : NULL;
    if (!cv) {
        Py_XDECREF(results);
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    size_t lens[C_COUNT];
    uint32_t keys[D_COUNT];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *one;
        Py_buffer view;
        if (payload_view(PySequence_Fast_GET_ITEM(seq, i), i, &view)) goto done;
        for (int k = 0; k < C_COUNT; k++) lens[k] = cv->col[k].len;
        for (int d = 0; d < D_COUNT; d++) keys[d] = cv->dict[d].n;
        Conv before = *cv; /* the counters (the buffers themselves are only appended to) */
        cv->scopes.len = 0;
        int rc = request(cv, (const uint8_t *)view.buf, (size_t)view.len);
        PyObject *names = rc ? NULL : scope_names(cv); /* its scopes' names point into the payload */
        PyBuffer_Release(&view);
        if (rc) {
            if (strcmp(cv->c.err, "out of memory") == 0) {
                PyErr_NoMemory();
                goto done;
            }
            one = PyUnicode_FromFormat("not taken as an OTLP ExportTraceServiceRequest: %s", cv->c.err);
            for (int k = 0; k < C_COUNT; k++) cv->col[k].len = lens[k];
            for (int d = 0; d < D_COUNT; d++) dict_truncate(&cv->dict[d], keys[d]);
            cv->rows = before.rows;
            cv->events = before.events;
            cv->ev_total = before.ev_total;
            cv->link_total = before.link_total;
            cv->sattr_total = before.sattr_total;
            cv->ev_attr_total = before.ev_attr_total;
            cv->link_attr_total = before.link_attr_total;
            cv->rattr_total = before.rattr_total;
            cv->c.err = NULL;
        } else {
            one = names ? Py_BuildValue("(KN)", (unsigned long long)(cv->rows - before.rows), names) : NULL;
        }
        if (!one) goto done;
        PyList_SET_ITEM(results, i, one);
    }
    PyObject *blk = block(cv);
    if (blk) {
        result = Py_BuildValue("(NKKO)", blk, (unsigned long long)cv->rows, (unsigned long long)cv->events, results);
    }
done:
    Py_DECREF(results);
    conv_give_back(cv);
    Py_DECREF(seq);
    return result;
}

static PyObject *columns(void) {
    PyObject *t = PyTuple_New((Py_ssize_t)N_COLUMNS);
    if (!t) return NULL;
    for (size_t i = 0; i < N_COLUMNS; i++) {
        PyObject *pair = Py_BuildValue("(ss)", COLUMNS[i].name, COLUMNS[i].type);
        if (!pair) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, pair);
    }
    return t;
}

static PyMethodDef methods[] = {
    {"convert", convert, METH_O, convert_doc},
    {"convert_each", convert_each, METH_O, convert_each_doc},
    {"convert_into", convert_into, METH_VARARGS, convert_into_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *m) {
    init_hex_pairs();
    PyObject *cols = columns();
    if (!cols || PyModule_AddObject(m, "COLUMNS", cols) < 0) {
        Py_XDECREF(cols);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module}, /* needs the GIL (the buffer cache): no Py_mod_gil slot */
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_otlp_native",
    "OTLP trace requests -> a ClickHouse Native block of otel_traces rows (see convert).",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlp_native(void) { return PyModuleDef_Init(&module); }
