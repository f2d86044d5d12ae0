/* Line protocol in one pass over the bytes, straight into column buffers.
 *
 * The native half of engine/ingest/lpnative.py (which documents the contract).
 * parse(offsets, data, offset, count, first_line, scale, divisor, default_ts)
 * reads ``count`` lines of an Arrow string array (int32 ``offsets`` and ``data``
 * buffers, starting at line ``offset``) without the GIL and returns
 * ``(shapes, deferred)``:
 *
 *   shapes:   one tuple per shape (measurement, tag keys and field keys in line
 *             order, field kinds): (measurement, [tag key], [field key],
 *             [kind], rows, ts, lines, [tag column], [field column]) where ts
 *             and lines are int64 buffers, a tag column is (offsets, data) of an
 *             Arrow string array, and a field column is (values,) for int64,
 *             uint64, float64 and bool (bitmap) or (offsets, data) for string.
 *   deferred: indices (in the slice) of the lines left to the exact parser.
 *
 * A line is parsed here only when this parser is sure to give what the exact
 * parser (engine/ingest/lineprotocol.py) gives: every error, every control
 * character or CR, a leading space or '#', a quoted string that does not close
 * on its line, a duplicate key, a key used as both tag and field, the key
 * "time", more than MAX_KEYS tags or fields, and a number out of range defer
 * the line, as do lines past MAX_SHAPES shapes in one call. Names and strings
 * are unescaped as the exact parser does.
 *
 * split(block) -> (count, offsets, data) gives the lines of a block, split at LF
 * with the final empty one dropped, as the buffers of an Arrow string array.
 *
 * Every buffer returned is a Buffer object that owns the memory this module
 * filled (read-only, freed with its last view), so Arrow wraps it without a
 * copy. ``make sanitize`` runs the differential tests against a build with
 * AddressSanitizer and UBSan.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 64
#define MAX_SHAPES 4096
#define TABLE_SLOTS 8192 /* a power of two, at least twice MAX_SHAPES */

enum kind { K_FLOAT = 0, K_INT = 1, K_UINT = 2, K_BOOL = 3, K_STRING = 4 };
static const char *KIND_NAMES[] = {"float64", "int64", "uint64", "bool", "string"};

#if defined(__GLIBC__)
static locale_t c_locale;
#endif

/* -- growable buffers --------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const void *src, size_t n) {
    if (n == 0) return 0; /* an empty buffer has no memory yet: memcpy(NULL, ..., 0) is UB */
    if (b->len + n > b->cap && buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static inline int buf_i64(Buf *b, int64_t v) { return buf_put(b, &v, sizeof v); }
static inline int buf_i32(Buf *b, int32_t v) { return buf_put(b, &v, sizeof v); }

/* -- buffers handed to Python without a copy ------------------------------------------ */

typedef struct {
    PyObject_HEAD char *p;
    Py_ssize_t len;
} OutBuf;

static int outbuf_getbuffer(PyObject *self, Py_buffer *view, int flags) {
    OutBuf *o = (OutBuf *)self;
    return PyBuffer_FillInfo(view, self, o->p, o->len, 1, flags);
}

static void outbuf_dealloc(PyObject *self) {
    free(((OutBuf *)self)->p);
    PyObject_Free(self);
}

static PyBufferProcs OUTBUF_AS_BUFFER = {outbuf_getbuffer, NULL};

static PyTypeObject OutBufType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "engine.ingest._lpnative.Buffer",
    .tp_basicsize = sizeof(OutBuf),
    .tp_dealloc = outbuf_dealloc,
    .tp_as_buffer = &OUTBUF_AS_BUFFER,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory the parser filled, read-only, freed with the last view of it.",
};

/* ``b``'s memory as a Python buffer object, which now owns it (``b`` is emptied). */
static PyObject *hand_over(Buf *b) {
    if (!b->p && buf_reserve(b, 1)) return PyErr_NoMemory();
    if (b->cap > b->len && b->len > 0) {
        /* the buffer outlives the parse (a memtable holds it until the checkpoint): give
           back what doubling reserved beyond the end, up to as much again as was used */
        char *fitted = realloc(b->p, b->len);
        if (fitted) {
            b->p = fitted;
            b->cap = b->len;
        }
    }
    OutBuf *o = PyObject_New(OutBuf, &OutBufType);
    if (!o) return NULL;
    o->p = b->p;
    o->len = (Py_ssize_t)b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return (PyObject *)o;
}

/* -- one line, parsed ----------------------------------------------------------------- */

typedef struct {
    const char *p;
    size_t len;
} Tok;

typedef struct {
    Tok measurement;
    int ntags, nfields;
    Tok tag_keys[MAX_KEYS], tag_values[MAX_KEYS];
    Tok field_keys[MAX_KEYS];
    int kinds[MAX_KEYS];
    union {
        int64_t i;
        uint64_t u;
        double f;
    } values[MAX_KEYS];
    Tok strings[MAX_KEYS];
    int has_time;
    int64_t time_ns;
} Line;

typedef struct {
    const char *s, *end; /* the line, without its LF */
    const char *at;
    char *scratch; /* unescaped tokens; at least as long as the line */
    size_t used;
} Cursor;

#define DEFER (-1)

static int is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

/* What each byte is to the tokenizer: one table lookup per byte instead of a search
 * of the stop and escape sets. */
enum { C_COMMA = 1, C_EQ = 2, C_SPACE = 4, C_BSLASH = 8, C_CONTROL = 16 };
static unsigned char CLS[256];

static void init_classes(void) {
    for (int i = 0; i < 256; i++) CLS[i] = is_control((unsigned char)i) ? C_CONTROL : 0;
    CLS[(unsigned char)','] = C_COMMA;
    CLS[(unsigned char)'='] = C_EQ;
    CLS[(unsigned char)' '] = C_SPACE;
    CLS[(unsigned char)'\\'] = C_BSLASH;
}

/* The exact parser's _read_token: up to a byte of class ``stops`` or a space (a
 * control character defers the line); a backslash before a byte of class
 * ``escapable`` stands for it, before anything else it is itself. */
static int read_token(Cursor *c, int stops, int escapable, Tok *out) {
    const char *start = c->at;
    const char *q = start;
    const int special = stops | C_SPACE | C_BSLASH | C_CONTROL;
    int escaped = 0;
    for (;;) {
        while (q < c->end && !(CLS[(unsigned char)*q] & special)) q++;
        if (q == c->end) break;
        int cls = CLS[(unsigned char)*q];
        if (cls & C_CONTROL) return DEFER;
        if (!(cls & C_BSLASH)) break; /* a stop or a space */
        int pair = q + 1 < c->end && (CLS[(unsigned char)q[1]] & escapable);
        escaped |= pair;
        q += pair ? 2 : 1;
    }
    c->at = q;
    if (!escaped) {
        out->p = start;
        out->len = (size_t)(q - start);
        return 0;
    }
    char *dst = c->scratch + c->used;
    size_t n = 0;
    for (const char *r = start; r < q;) {
        if (*r == '\\' && r + 1 < q && (CLS[(unsigned char)r[1]] & escapable)) {
            dst[n++] = r[1];
            r += 2;
        } else {
            dst[n++] = *r++;
        }
    }
    out->p = dst;
    out->len = n;
    c->used += n;
    return 0;
}

/* A quoted string: \" and \\ are escapes; it must close on this line. */
static int read_string(Cursor *c, Tok *out) {
    const char *q = c->at + 1;
    char *dst = c->scratch + c->used;
    size_t n = 0;
    while (q < c->end) {
        unsigned char ch = (unsigned char)*q;
        if (ch == '\\' && q + 1 < c->end && (q[1] == '"' || q[1] == '\\')) {
            dst[n++] = q[1];
            q += 2;
            continue;
        }
        if (ch == '"') {
            c->at = q + 1;
            out->p = dst;
            out->len = n;
            c->used += n;
            return 0;
        }
        if (is_control(ch)) return DEFER;
        dst[n++] = (char)ch;
        q++;
    }
    return DEFER; /* open at the end of the line: the exact parser decides */
}

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* Digits [p, e) as an unsigned value; -1 when empty, not all digits, or past ``limit``.
 * Up to 19 digits cannot pass 2^64, so only longer runs pay for the overflow checks. */
static int digits_value(const char *p, const char *e, uint64_t limit, uint64_t *out) {
    uint64_t v = 0;
    if (p == e) return -1;
    while (e - p > 1 && *p == '0') p++; /* leading zeros cost no range */
    if (e - p <= 19) {
        for (; p < e; p++) {
            unsigned d = (unsigned)(*p - '0');
            if (d > 9) return -1;
            v = v * 10 + d;
        }
        if (v > limit) return -1;
    } else {
        for (; p < e; p++) {
            unsigned d = (unsigned)(*p - '0');
            if (d > 9) return -1;
            if (v > (UINT64_MAX - d) / 10) return -1;
            v = v * 10 + d;
        }
        if (v > limit) return -1;
    }
    *out = v;
    return 0;
}

/* The exact parser's _FLOAT_RE: [+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)? */
static int float_shaped(const char *p, const char *e) {
    if (p < e && (*p == '+' || *p == '-')) p++;
    const char *d = p;
    while (p < e && is_digit(*p)) p++;
    int whole = p > d;
    if (p < e && *p == '.') {
        p++;
        const char *f = p;
        while (p < e && is_digit(*p)) p++;
        if (!whole && p == f) return 0;
    } else if (!whole) {
        return 0;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        const char *x = p;
        while (p < e && is_digit(*p)) p++;
        if (p == x) return 0;
    }
    return p == e;
}

static int bool_value(const char *p, size_t n, int *out) {
    static const char *TRUES[] = {"t", "T", "true", "True", "TRUE"};
    static const char *FALSES[] = {"f", "F", "false", "False", "FALSE"};
    for (int i = 0; i < 5; i++) {
        if (strlen(TRUES[i]) == n && !memcmp(p, TRUES[i], n)) return *out = 1, 0;
        if (strlen(FALSES[i]) == n && !memcmp(p, FALSES[i], n)) return *out = 0, 0;
    }
    return -1;
}

static int parse_double(const char *p, const char *e, double *out) {
    char small[64];
    char *copy = small;
    size_t n = (size_t)(e - p);
    if (n >= sizeof small) {
        copy = malloc(n + 1);
        if (!copy) return -1;
    }
    memcpy(copy, p, n);
    copy[n] = 0;
    char *stop;
#if defined(__GLIBC__)
    double v = strtod_l(copy, &stop, c_locale);
#else
    double v = strtod(copy, &stop);
#endif
    int ok = stop == copy + n && v - v == 0; /* all of it, and finite */
    if (copy != small) free(copy);
    if (!ok) return -1;
    *out = v;
    return 0;
}

/* The exact parser's first-character test: "tTfF-0123456789." */
static int starts_a_value(char ch) {
    return is_digit(ch) || ch == '-' || ch == '.' || ch == 't' || ch == 'T' || ch == 'f' ||
           ch == 'F';
}

/* A field value that is not a string: the exact parser's _field_value/_scalar. */
static int read_scalar(Cursor *c, Line *line, int i) {
    const char *p = c->at, *q = p;
    while (q < c->end && !(CLS[(unsigned char)*q] & (C_COMMA | C_SPACE | C_CONTROL))) q++;
    if (q < c->end && (CLS[(unsigned char)*q] & C_CONTROL)) return DEFER;
    c->at = q;
    if (q == p || !starts_a_value(*p)) return DEFER;
    char last = q[-1];
    if (last == 'i') {
        int negative = *p == '-';
        uint64_t v;
        if (digits_value(p + negative, q - 1, negative ? (uint64_t)INT64_MAX + 1 : INT64_MAX, &v) ==
            0) {
            line->kinds[i] = K_INT;
            line->values[i].i = negative ? (int64_t)(0 - v) : (int64_t)v;
            return 0;
        }
        return DEFER;
    }
    if (last == 'u') {
        uint64_t v;
        if (digits_value(p, q - 1, UINT64_MAX, &v) == 0) {
            line->kinds[i] = K_UINT;
            line->values[i].u = v;
            return 0;
        }
        return DEFER;
    }
    int b;
    if (bool_value(p, (size_t)(q - p), &b) == 0) {
        line->kinds[i] = K_BOOL;
        line->values[i].i = b;
        return 0;
    }
    if (float_shaped(p, q) && parse_double(p, q, &line->values[i].f) == 0) {
        line->kinds[i] = K_FLOAT;
        return 0;
    }
    return DEFER;
}

static int same(Tok a, Tok b) { return a.len == b.len && !memcmp(a.p, b.p, a.len); }

static int is_time_key(Tok t) { return t.len == 4 && !memcmp(t.p, "time", 4); }

/* Keys the exact parser refuses or treats apart: duplicates, tag and field at once,
 * and "time". */
static int keys_plain(const Line *line) {
    for (int i = 0; i < line->ntags; i++) {
        if (is_time_key(line->tag_keys[i])) return 0;
        for (int j = 0; j < i; j++)
            if (same(line->tag_keys[i], line->tag_keys[j])) return 0;
    }
    for (int i = 0; i < line->nfields; i++) {
        if (is_time_key(line->field_keys[i])) return 0;
        for (int j = 0; j < i; j++)
            if (same(line->field_keys[i], line->field_keys[j])) return 0;
        for (int j = 0; j < line->ntags; j++)
            if (same(line->field_keys[i], line->tag_keys[j])) return 0;
    }
    return 1;
}

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int read_time(Cursor *c, int64_t scale, Line *line) {
    const char *p = c->at, *q = p;
    while (q < c->end && (*q == '-' || is_digit(*q))) q++;
    if (q < c->end && *q != ' ') return DEFER;
    int negative = p < q && *p == '-';
    uint64_t v;
    if (digits_value(p + negative, q, negative ? (uint64_t)INT64_MAX + 1 : INT64_MAX, &v))
        return DEFER;
    int64_t raw = negative ? (int64_t)(0 - v) : (int64_t)v, ns;
    if (__builtin_mul_overflow(raw, scale, &ns)) return DEFER;
    line->has_time = 1;
    line->time_ns = ns;
    while (q < c->end && *q == ' ') q++;
    c->at = q;
    return 0;
}

/* The exact parser's _parse_point, on a line with no LF; DEFER where it would not
 * give a point or where this parser does not follow it. 1: an empty line. */
static int parse_line(Cursor *c, int64_t scale, Line *line) {
    if (c->at == c->end) return 1;
    if (*c->at == ' ' || *c->at == '#') return DEFER;
    line->ntags = line->nfields = 0;
    line->has_time = 0;
    if (read_token(c, C_COMMA, C_COMMA | C_SPACE, &line->measurement) || !line->measurement.len) return DEFER;
    while (c->at < c->end && *c->at == ',') {
        c->at++;
        if (line->ntags == MAX_KEYS || c->at == c->end || *c->at == ' ') return DEFER;
        Tok *key = &line->tag_keys[line->ntags], *value = &line->tag_values[line->ntags];
        if (read_token(c, C_COMMA | C_EQ, C_COMMA | C_EQ | C_SPACE, key) || !key->len) return DEFER;
        if (c->at == c->end || *c->at != '=') return DEFER;
        c->at++;
        if (read_token(c, C_COMMA | C_EQ, C_COMMA | C_EQ | C_SPACE, value) || !value->len) return DEFER;
        line->ntags++;
    }
    if (c->at == c->end || *c->at != ' ') return DEFER;
    while (c->at < c->end && *c->at == ' ') c->at++;
    for (;;) {
        if (line->nfields == MAX_KEYS) return DEFER;
        int i = line->nfields;
        if (read_token(c, C_COMMA | C_EQ, C_COMMA | C_EQ | C_SPACE, &line->field_keys[i]) || !line->field_keys[i].len)
            return DEFER;
        if (c->at == c->end || *c->at != '=') return DEFER;
        c->at++;
        if (c->at < c->end && *c->at == '"') {
            if (read_string(c, &line->strings[i])) return DEFER;
            line->kinds[i] = K_STRING;
        } else if (read_scalar(c, line, i)) {
            return DEFER;
        }
        line->nfields++;
        if (c->at == c->end || *c->at != ',') break;
        c->at++;
    }
    if (c->at < c->end && *c->at == ' ') {
        while (c->at < c->end && *c->at == ' ') c->at++;
        if (c->at < c->end && read_time(c, scale, line)) return DEFER;
    }
    if (c->at != c->end) return DEFER;
    return keys_plain(line) ? 0 : DEFER;
}

/* -- shapes and their columns --------------------------------------------------------- */

typedef struct {
    Buf offsets, data; /* strings; offsets start with 0 */
    Buf values;        /* fixed width; bool: a bitmap */
} Column;

typedef struct {
    char *sig;
    size_t sig_len;
    uint64_t hash;
    int ntags, nfields;
    int kinds[MAX_KEYS];
    Tok measurement, tag_keys[MAX_KEYS], field_keys[MAX_KEYS]; /* into sig */
    int64_t rows;
    Buf ts, lines;
    Column *columns; /* tags, then fields */
} Shape;

typedef struct {
    Shape *shapes;
    int nshapes;
    int last; /* the shape of the line before, or -1 */
    int slots[TABLE_SLOTS]; /* index + 1, 0 when free */
    Buf sig;
    Buf deferred;
} Parser;

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

/* measurement \0 (tag key \0)* \1 (kind field key \0)*: no name holds a control
 * character, so no two shapes share a signature. */
static int signature(Parser *ps, const Line *line) {
    Buf *b = &ps->sig;
    b->len = 0;
    char zero = 0, one = 1;
    if (buf_put(b, line->measurement.p, line->measurement.len) || buf_put(b, &zero, 1)) return -1;
    for (int i = 0; i < line->ntags; i++)
        if (buf_put(b, line->tag_keys[i].p, line->tag_keys[i].len) || buf_put(b, &zero, 1))
            return -1;
    if (buf_put(b, &one, 1)) return -1;
    for (int i = 0; i < line->nfields; i++) {
        char kind = (char)('0' + line->kinds[i]);
        if (buf_put(b, &kind, 1) || buf_put(b, line->field_keys[i].p, line->field_keys[i].len) ||
            buf_put(b, &zero, 1))
            return -1;
    }
    return 0;
}

static Shape *new_shape(Parser *ps, const Line *line, uint64_t hash) {
    if (ps->nshapes == MAX_SHAPES) return NULL;
    if (ps->nshapes % 64 == 0) {
        Shape *grown = realloc(ps->shapes, sizeof(Shape) * (size_t)(ps->nshapes + 64));
        if (!grown) return NULL;
        ps->shapes = grown;
    }
    Shape *s = &ps->shapes[ps->nshapes];
    memset(s, 0, sizeof *s);
    s->sig = malloc(ps->sig.len);
    if (!s->sig) return NULL;
    memcpy(s->sig, ps->sig.p, ps->sig.len);
    s->sig_len = ps->sig.len;
    s->hash = hash;
    s->ntags = line->ntags;
    s->nfields = line->nfields;
    /* names point into the signature, which holds them in order */
    const char *p = s->sig;
    s->measurement.p = p;
    s->measurement.len = line->measurement.len;
    p += line->measurement.len + 1;
    for (int i = 0; i < line->ntags; i++) {
        s->tag_keys[i].p = p;
        s->tag_keys[i].len = line->tag_keys[i].len;
        p += line->tag_keys[i].len + 1;
    }
    p += 1;
    for (int i = 0; i < line->nfields; i++) {
        s->kinds[i] = line->kinds[i];
        s->field_keys[i].p = p + 1;
        s->field_keys[i].len = line->field_keys[i].len;
        p += line->field_keys[i].len + 2;
    }
    s->columns = calloc((size_t)(line->ntags + line->nfields), sizeof(Column));
    if (!s->columns) {
        free(s->sig);
        return NULL;
    }
    ps->nshapes++;
    return s;
}

static Shape *find_shape(Parser *ps, const Line *line, int *oom);

/* Whether ``line`` has shape ``s``: most lines have the shape of the line before. */
static int has_shape(const Shape *s, const Line *line) {
    if (s->ntags != line->ntags || s->nfields != line->nfields ||
        !same(s->measurement, line->measurement))
        return 0;
    for (int i = 0; i < line->ntags; i++)
        if (!same(s->tag_keys[i], line->tag_keys[i])) return 0;
    for (int i = 0; i < line->nfields; i++)
        if (s->kinds[i] != line->kinds[i] || !same(s->field_keys[i], line->field_keys[i]))
            return 0;
    return 1;
}

/* The shape of ``line``, made if new; NULL when the table is full (the line defers)
 * or memory ran out (``*oom`` set). */
static Shape *shape_of(Parser *ps, const Line *line, int *oom) {
    if (ps->last >= 0 && has_shape(&ps->shapes[ps->last], line)) return &ps->shapes[ps->last];
    Shape *found = find_shape(ps, line, oom);
    if (found) ps->last = (int)(found - ps->shapes);
    return found;
}

static Shape *find_shape(Parser *ps, const Line *line, int *oom) {
    if (signature(ps, line)) return *oom = 1, NULL;
    uint64_t hash = fnv1a(ps->sig.p, ps->sig.len);
    size_t slot = (size_t)hash & (TABLE_SLOTS - 1);
    while (ps->slots[slot]) {
        Shape *s = &ps->shapes[ps->slots[slot] - 1];
        if (s->hash == hash && s->sig_len == ps->sig.len && !memcmp(s->sig, ps->sig.p, s->sig_len))
            return s;
        slot = (slot + 1) & (TABLE_SLOTS - 1);
    }
    if (ps->nshapes == MAX_SHAPES) return NULL;
    Shape *s = new_shape(ps, line, hash);
    if (!s) return *oom = 1, NULL;
    ps->slots[slot] = ps->nshapes;
    return s;
}

static int add_string(Column *col, Tok t) {
    if (col->offsets.len == 0 && buf_i32(&col->offsets, 0)) return -1;
    if (col->data.len + t.len > INT32_MAX) return -1;
    if (buf_put(&col->data, t.p, t.len)) return -1;
    return buf_i32(&col->offsets, (int32_t)col->data.len);
}

static int add_row(Shape *s, const Line *line, int64_t ts, int64_t number) {
    if (buf_i64(&s->ts, ts) || buf_i64(&s->lines, number)) return -1;
    for (int i = 0; i < s->ntags; i++)
        if (add_string(&s->columns[i], line->tag_values[i])) return -1;
    for (int i = 0; i < s->nfields; i++) {
        Column *col = &s->columns[s->ntags + i];
        switch (s->kinds[i]) {
        case K_STRING:
            if (add_string(col, line->strings[i])) return -1;
            break;
        case K_BOOL:
            if (s->rows % 8 == 0) {
                char zero = 0;
                if (buf_put(&col->values, &zero, 1)) return -1;
            }
            if (line->values[i].i) col->values.p[s->rows / 8] |= (char)(1 << (s->rows % 8));
            break;
        default:
            if (buf_put(&col->values, &line->values[i], 8)) return -1;
        }
    }
    s->rows++;
    return 0;
}

static void free_parser(Parser *ps) {
    for (int i = 0; i < ps->nshapes; i++) {
        Shape *s = &ps->shapes[i];
        for (int j = 0; j < s->ntags + s->nfields; j++) {
            free(s->columns[j].offsets.p);
            free(s->columns[j].data.p);
            free(s->columns[j].values.p);
        }
        free(s->columns);
        free(s->ts.p);
        free(s->lines.p);
        free(s->sig);
    }
    free(ps->shapes);
    free(ps->sig.p);
    free(ps->deferred.p);
}

typedef struct {
    const int32_t *offsets;
    const char *data;
    Py_ssize_t offset, count;
    int64_t first_line, scale, divisor, default_ts;
} Input;

/* Every line; 0, or -1 when memory ran out. Runs without the GIL. */
static int parse_all(const Input *in, Parser *ps) {
    size_t widest = 0;
    for (Py_ssize_t i = 0; i < in->count; i++) {
        size_t n = (size_t)(in->offsets[in->offset + i + 1] - in->offsets[in->offset + i]);
        if (n > widest) widest = n;
    }
    char *scratch = malloc(widest + 1);
    Line *line = malloc(sizeof(Line));
    if (!scratch || !line) {
        free(scratch);
        free(line);
        return -1;
    }
    int failed = 0;
    for (Py_ssize_t i = 0; i < in->count && !failed; i++) {
        Cursor c;
        c.s = in->data + in->offsets[in->offset + i];
        c.end = in->data + in->offsets[in->offset + i + 1];
        c.at = c.s;
        c.scratch = scratch;
        c.used = 0;
        int got = parse_line(&c, in->scale, line);
        if (got == 1) continue;
        Shape *s = NULL;
        int oom = 0;
        if (got == 0) s = shape_of(ps, line, &oom);
        if (oom) {
            failed = 1;
        } else if (s == NULL) {
            failed = buf_i64(&ps->deferred, (int64_t)i);
        } else {
            int64_t ts = line->has_time ? floor_div(line->time_ns, in->divisor) : in->default_ts;
            failed = add_row(s, line, ts, in->first_line + i);
        }
    }
    free(scratch);
    free(line);
    return failed ? -1 : 0;
}

/* -- to Python ------------------------------------------------------------------------ */


static PyObject *text_of(Tok t) { return PyUnicode_DecodeUTF8(t.p, (Py_ssize_t)t.len, "strict"); }

static PyObject *shape_tuple(Shape *s) {
    PyObject *tags = PyList_New(s->ntags), *fields = PyList_New(s->nfields);
    PyObject *kinds = PyList_New(s->nfields), *tag_cols = PyList_New(s->ntags);
    PyObject *field_cols = PyList_New(s->nfields);
    if (!tags || !fields || !kinds || !tag_cols || !field_cols) goto fail;
    for (int i = 0; i < s->ntags; i++) {
        PyObject *key = text_of(s->tag_keys[i]);
        PyObject *col = Py_BuildValue("(NN)", hand_over(&s->columns[i].offsets),
                                      hand_over(&s->columns[i].data));
        if (!key || !col) {
            Py_XDECREF(key);
            Py_XDECREF(col);
            goto fail;
        }
        PyList_SET_ITEM(tags, i, key);
        PyList_SET_ITEM(tag_cols, i, col);
    }
    for (int i = 0; i < s->nfields; i++) {
        Column *c = &s->columns[s->ntags + i];
        PyObject *key = text_of(s->field_keys[i]);
        PyObject *kind = PyUnicode_FromString(KIND_NAMES[s->kinds[i]]);
        PyObject *col = s->kinds[i] == K_STRING
                            ? Py_BuildValue("(NN)", hand_over(&c->offsets), hand_over(&c->data))
                            : Py_BuildValue("(N)", hand_over(&c->values));
        if (!key || !kind || !col) {
            Py_XDECREF(key);
            Py_XDECREF(kind);
            Py_XDECREF(col);
            goto fail;
        }
        PyList_SET_ITEM(fields, i, key);
        PyList_SET_ITEM(kinds, i, kind);
        PyList_SET_ITEM(field_cols, i, col);
    }
    return Py_BuildValue("(NNNNLNNNN)", text_of(s->measurement), tags, fields, kinds,
                         (long long)s->rows, hand_over(&s->ts), hand_over(&s->lines), tag_cols,
                         field_cols);
fail:
    Py_XDECREF(tags);
    Py_XDECREF(fields);
    Py_XDECREF(kinds);
    Py_XDECREF(tag_cols);
    Py_XDECREF(field_cols);
    return NULL;
}

static PyObject *parse(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer offsets, data;
    Input in;
    if (!PyArg_ParseTuple(args, "y*y*nnLLLL", &offsets, &data, &in.offset, &in.count,
                          &in.first_line, &in.scale, &in.divisor, &in.default_ts))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t lines_in_buffer = offsets.len / (Py_ssize_t)sizeof(int32_t) - 1;
    if (in.offset < 0 || in.count < 0 || in.offset + in.count > lines_in_buffer ||
        in.scale <= 0 || in.divisor <= 0) {
        PyErr_SetString(PyExc_ValueError, "lines out of the buffers' range");
        goto done;
    }
    in.offsets = offsets.buf;
    in.data = data.buf;
    int32_t low = in.offsets[in.offset], high = in.offsets[in.offset + in.count];
    if (low < 0 || high < low || (Py_ssize_t)high > data.len) {
        PyErr_SetString(PyExc_ValueError, "offsets out of the data's range");
        goto done;
    }
    Parser *ps = calloc(1, sizeof(Parser));
    if (!ps) {
        PyErr_NoMemory();
        goto done;
    }
    ps->last = -1;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = parse_all(&in, ps);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
    } else {
        PyObject *shapes = PyList_New(ps->nshapes);
        PyObject *deferred = PyList_New(0);
        int ok = shapes && deferred;
        for (int i = 0; ok && i < ps->nshapes; i++) {
            PyObject *t = shape_tuple(&ps->shapes[i]);
            if (!t) ok = 0;
            else PyList_SET_ITEM(shapes, i, t);
        }
        const int64_t *d = (const int64_t *)ps->deferred.p;
        for (size_t i = 0; ok && i < ps->deferred.len / 8; i++) {
            PyObject *n = PyLong_FromLongLong(d[i]);
            if (!n || PyList_Append(deferred, n)) ok = 0;
            Py_XDECREF(n);
        }
        if (ok) result = Py_BuildValue("(NN)", shapes, deferred);
        else {
            Py_XDECREF(shapes);
            Py_XDECREF(deferred);
        }
    }
    free_parser(ps);
    free(ps);
done:
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    return result;
}

/* split(block) -> (count, offsets, data): the lines of ``block`` split at LF, the
 * final empty one dropped (as str.split would give them, then without a trailing
 * ""), as the buffers of an Arrow string array. */
static PyObject *split(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer block;
    if (!PyArg_ParseTuple(args, "y*", &block)) return NULL;
    PyObject *result = NULL;
    if (block.len > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "a block of more than 2 GiB");
        PyBuffer_Release(&block);
        return NULL;
    }
    const char *p = block.buf, *end = p + block.len;
    Buf offsets = {0}, data = {0};
    Py_ssize_t count = 0;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t newlines = 0;
    for (const char *q = p; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) newlines++;
    count = newlines + 1 - (block.len > 0 && end[-1] == '\n');
    failed = buf_reserve(&offsets, sizeof(int32_t) * (size_t)(count + 1)) ||
             buf_reserve(&data, (size_t)(block.len - newlines) + 1);
    if (!failed) {
        int32_t *off = (int32_t *)offsets.p;
        off[0] = 0;
        Py_ssize_t i = 0;
        const char *q = p;
        while (i < count) {
            const char *nl = memchr(q, '\n', (size_t)(end - q));
            const char *stop = nl ? nl : end;
            memcpy(data.p + data.len, q, (size_t)(stop - q));
            data.len += (size_t)(stop - q);
            off[++i] = (int32_t)data.len;
            q = stop + 1;
        }
        offsets.len = sizeof(int32_t) * (size_t)(count + 1);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&block);
    if (failed) {
        PyErr_NoMemory();
    } else {
        result = Py_BuildValue("(nNN)", count, hand_over(&offsets), hand_over(&data));
    }
    free(offsets.p);
    free(data.p);
    return result;
}

static PyMethodDef METHODS[] = {
    {"split", split, METH_VARARGS, "Split a block of lines into Arrow string buffers."},
    {"parse", parse, METH_VARARGS, "Parse line protocol lines into column buffers."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_lpnative", NULL, -1, METHODS, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__lpnative(void) {
    init_classes();
    if (PyType_Ready(&OutBufType) < 0) return NULL;
#if defined(__GLIBC__)
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!c_locale) return PyErr_NoMemory();
#endif
    return PyModule_Create(&MODULE);
}
