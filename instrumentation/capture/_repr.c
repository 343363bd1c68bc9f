/* Bounded representations of builtin values in C (see _repr.h).
 *
 * The text is exactly values.safe_repr's: the Python renderer is the reference, and the tests compare
 * the two on many values. Only exact builtin types are rendered here, so no user code runs (no
 * __repr__, __len__, __iter__ or __hash__ of a user class); a value holding anything else is left to
 * the Python renderer whole, so that the two never disagree on where a budget ran out. This is what
 * a recorded call pays for each mutable argument or return value (a list, a tuple, a deque), ~20x
 * less than the Python renderer.
 */
#define PY_SSIZE_T_CLEAN
#include "_repr.h"
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#define SEEN_MAX 64
#define NESTING_MAX 64 /* deques are not bounded by max_depth (as in values._render): stop somewhere */

typedef struct {
    const ReprLimits *lim;
    Py_ssize_t left; /* values._Budget: characters left for container items */
    PyObject *seen[SEEN_MAX];
    int nseen, nesting;
    int unsupported; /* a value of a type rendered only in Python was met */
} Renderer;

static PyTypeObject *g_deque;
static PyObject *g_ellipsis, *g_comma, *g_redacted; /* "…", ", ", "<redacted>" */
static PyObject *g_opaque_names; /* values._opaque_names: {type: name} of types rendered "<name object at 0x..>" */

PyObject *repr_set_opaque_names(PyObject *module, PyObject *names) {
    if (!PyDict_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "set_opaque_names expects a dict");
        return NULL;
    }
    Py_INCREF(names);
    Py_XSETREF(g_opaque_names, names);
    Py_RETURN_NONE;
}

int repr_init(void) {
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL)
        return -1;
    g_deque = (PyTypeObject *)PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    g_ellipsis = PyUnicode_FromString("\xe2\x80\xa6");
    g_comma = PyUnicode_InternFromString(", ");
    g_redacted = PyUnicode_InternFromString("<redacted>");
    return g_deque != NULL && g_ellipsis != NULL && g_comma != NULL && g_redacted != NULL ? 0 : -1;
}

/* ---------------------------------------------------------------- redaction (see _repr.h) */
#define MAX_TRIGGERS 256
#define CL_DIGIT 1
#define CL_SEP 2
#define CL_B64 4
#define CL_FIRST 8 /* some trigger starts with this character (either case) */

typedef struct {
    int enabled, card, b64run, always;
    Py_ssize_t min_len, slack;
    PyObject *name_check, *redact_text, *redact_bytes; /* the policy's callables (None: names only) */
    PyObject *names;                                   /* {name: bool} cache of name_check */
    PyObject *trigger_store;                           /* tuple of bytes holding triggers and needs */
    const char *trig[MAX_TRIGGERS];                    /* lower-cased unless case-sensitive */
    Py_ssize_t trig_len[MAX_TRIGGERS];
    char trig_cs[MAX_TRIGGERS];                        /* holds an upper-case letter: matched exactly */
    const char *needs[MAX_TRIGGERS];                   /* "" or characters one of which the text holds */
    int ntrig;
    unsigned char cls[128];
    unsigned char pair[128][16]; /* bit (a, b): some trigger starts with lower-case a, b */
    unsigned short first_start[128], first_count[128]; /* the triggers (sorted) starting with lower-case a */
} Redaction;

static Redaction g_red = {.min_len = PY_SSIZE_T_MAX, .slack = 256};

#define LOWER(c) ((c) >= 'A' && (c) <= 'Z' ? (c) + 32 : (c))

int repr_patterns_on(void) { return g_red.enabled; }

/* 1 when a trigger starts at s[i] (case-insensitive unless the trigger is case-sensitive, ASCII)
 * and the text holds one of the characters its rule needs */
#define MATCH_AT(T)                                                                                      \
    static int has_any_##T(const T *s, Py_ssize_t n, const char *chars) {                                \
        for (Py_ssize_t i = 0; i < n; i++)                                                               \
            if (s[i] < 128 && s[i] != 0 && strchr(chars, (int)s[i]) != NULL)                             \
                return 1;                                                                                \
        return 0;                                                                                        \
    }                                                                                                    \
    static int match_at_##T(const T *s, Py_ssize_t i, Py_ssize_t n) {                                    \
        unsigned a = LOWER(s[i]);                                                                        \
        for (int k = g_red.first_start[a], end = k + g_red.first_count[a]; k < end; k++) {               \
            Py_ssize_t len = g_red.trig_len[k], j = 0;                                                   \
            if (len > n - i)                                                                             \
                continue;                                                                                \
            const char *t = g_red.trig[k];                                                               \
            int cs = g_red.trig_cs[k];                                                                   \
            for (; j < len; j++) {                                                                       \
                Py_UCS4 c = s[i + j];                                                                    \
                if (c >= 128 || (char)(cs ? c : LOWER(c)) != t[j])                                       \
                    break;                                                                               \
            }                                                                                            \
            if (j == len && (!g_red.needs[k][0] || has_any_##T(s, n, g_red.needs[k])))                   \
                return 1;                                                                                \
        }                                                                                                \
        return 0;                                                                                        \
    }

/* One pass: card-like digit runs (13 digits, the first 2-6, single spaces/dashes between groups),
 * exactly-40 base64 runs, and trigger pairs (then the triggers themselves). */
#define SCAN(T)                                                                                          \
    MATCH_AT(T)                                                                                          \
    static int scan_##T(const T *s, Py_ssize_t n) {                                                      \
        int digits = 0, sep_ok = 0, brand = 0;                                                           \
        const int card = g_red.card, b64run = g_red.b64run; /* locals: kept in registers */              \
        const unsigned char *cls = g_red.cls;                                                            \
        Py_ssize_t b64 = 0;                                                                              \
        for (Py_ssize_t i = 0; i < n; i++) {                                                             \
            Py_UCS4 c = s[i];                                                                            \
            unsigned cl = c < 128 ? cls[c] : 0;                                                          \
            if (cl & CL_DIGIT) {                                                                         \
                /* a card starts a run, or a group after a space: restart where one may begin */     \
                if (digits == 0 || (!sep_ok && !brand)) {                                                \
                    digits = 0;                                                                          \
                    brand = c >= '2' && c <= '6';                                                        \
                }                                                                                        \
                if (++digits >= 13 && brand && card)                                                     \
                    return 1;                                                                            \
                sep_ok = 1;                                                                              \
            } else if ((cl & CL_SEP) && sep_ok) {                                                        \
                sep_ok = 0;                                                                              \
            } else {                                                                                     \
                digits = sep_ok = 0;                                                                     \
            }                                                                                            \
            if (cl & CL_B64) {                                                                           \
                b64++;                                                                                   \
            } else {                                                                                     \
                if (b64 == 40 && b64run)                                                                 \
                    return 1;                                                                            \
                b64 = 0;                                                                                 \
            }                                                                                            \
            if ((cl & CL_FIRST) && i + 1 < n) {                                                          \
                Py_UCS4 d = s[i + 1];                                                                    \
                if (d < 128) {                                                                           \
                    unsigned a = LOWER(c), b = LOWER(d);                                                 \
                    if (((g_red.pair[a][b >> 3] >> (b & 7)) & 1) && match_at_##T(s, i, n))               \
                        return 1;                                                                        \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        return b64 == 40 && b64run;                                                                      \
    }

SCAN(Py_UCS1)
SCAN(Py_UCS2)
SCAN(Py_UCS4)

static int scan_text(PyObject *text) { /* str or bytes; 1 may hold a secret, 0 not, -1 error */
    Py_ssize_t n;
    if (PyBytes_Check(text))
        n = PyBytes_GET_SIZE(text);
    else if (PyByteArray_Check(text))
        n = PyByteArray_GET_SIZE(text);
    else if (PyUnicode_Check(text))
        n = PyUnicode_GET_LENGTH(text);
    else {
        PyErr_SetString(PyExc_TypeError, "may_hold_secret() takes str or bytes");
        return -1;
    }
    if (!g_red.enabled || n < g_red.min_len)
        return 0;
    if (g_red.always)
        return 1;
    if (PyBytes_Check(text))
        return scan_Py_UCS1((const Py_UCS1 *)PyBytes_AS_STRING(text), n);
    if (PyByteArray_Check(text))
        return scan_Py_UCS1((const Py_UCS1 *)PyByteArray_AS_STRING(text), n);
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        return scan_Py_UCS1(PyUnicode_1BYTE_DATA(text), n);
    case PyUnicode_2BYTE_KIND:
        return scan_Py_UCS2(PyUnicode_2BYTE_DATA(text), n);
    default:
        return scan_Py_UCS4(PyUnicode_4BYTE_DATA(text), n);
    }
}

int repr_may_hold(PyObject *text) { return scan_text(text); }

PyObject *repr_may_hold_secret(PyObject *module, PyObject *text) {
    int hit = scan_text(text);
    if (hit < 0)
        return NULL;
    return PyBool_FromLong(hit);
}

/* 1 when values under ``name`` (an exact str) are redacted, 0 when not, -1 on error */
static int secret_name(PyObject *name) {
    if (g_red.name_check == NULL || g_red.name_check == Py_None)
        return 0;
    PyObject *known = PyDict_GetItemWithError(g_red.names, name);
    if (known != NULL)
        return known == Py_True;
    if (PyErr_Occurred())
        return -1;
    PyObject *r = PyObject_CallOneArg(g_red.name_check, name);
    if (r == NULL)
        return -1;
    int hit = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (hit < 0)
        return -1;
    if (PyDict_GET_SIZE(g_red.names) >= 65536)
        PyDict_Clear(g_red.names);
    if (PyDict_SetItem(g_red.names, name, hit ? Py_True : Py_False) < 0)
        return -1;
    return hit;
}

PyObject *repr_set_redaction(PyObject *module, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"name_check", "redact_text", "redact_bytes", "enabled", "triggers", "needs", "card",
                             "b64run", "always", "min_len", "slack", NULL};
    PyObject *name_check, *redact_text, *redact_bytes, *triggers, *needs;
    int enabled, card, b64run, always;
    Py_ssize_t min_len, slack;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOpO!O!pppnn", kwlist, &name_check, &redact_text, &redact_bytes,
                                     &enabled, &PyTuple_Type, &triggers, &PyTuple_Type, &needs, &card, &b64run,
                                     &always, &min_len, &slack))
        return NULL;
    Py_ssize_t nt = PyTuple_GET_SIZE(triggers);
    if (nt > MAX_TRIGGERS || PyTuple_GET_SIZE(needs) != nt) {
        PyErr_Format(PyExc_ValueError, "at most %d triggers, each with its needs", MAX_TRIGGERS);
        return NULL;
    }
    PyObject *store = PyTuple_New(2 * nt); /* trigger i at i, its needs at nt + i */
    if (store == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < 2 * nt; i++) {
        PyObject *t = PyTuple_GET_ITEM(i < nt ? triggers : needs, i < nt ? i : i - nt);
        PyObject *b = PyUnicode_Check(t) ? PyUnicode_AsASCIIString(t) : NULL;
        if (b == NULL || (i < nt && PyBytes_GET_SIZE(b) == 0) || strlen(PyBytes_AS_STRING(b)) != (size_t)PyBytes_GET_SIZE(b)) {
            Py_XDECREF(b);
            Py_DECREF(store);
            if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "triggers are non-empty ASCII str, needs ASCII str");
            }
            return NULL;
        }
        PyTuple_SET_ITEM(store, i, b);
    }
    if (g_red.names == NULL && (g_red.names = PyDict_New()) == NULL) {
        Py_DECREF(store);
        return NULL;
    }
    PyDict_Clear(g_red.names);
    Py_XSETREF(g_red.trigger_store, store);
    Py_INCREF(name_check);
    Py_XSETREF(g_red.name_check, name_check);
    Py_INCREF(redact_text);
    Py_XSETREF(g_red.redact_text, redact_text);
    Py_INCREF(redact_bytes);
    Py_XSETREF(g_red.redact_bytes, redact_bytes);
    memset(g_red.cls, 0, sizeof g_red.cls);
    memset(g_red.pair, 0, sizeof g_red.pair);
    for (int c = 0; c < 128; c++) {
        if (c >= '0' && c <= '9')
            g_red.cls[c] |= CL_DIGIT | CL_B64;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' || c == '/')
            g_red.cls[c] |= CL_B64;
        if (c == ' ' || c == '-')
            g_red.cls[c] |= CL_SEP;
    }
    g_red.ntrig = (int)nt;
    memset(g_red.first_start, 0, sizeof g_red.first_start);
    memset(g_red.first_count, 0, sizeof g_red.first_count);
    int order[MAX_TRIGGERS], filled = 0; /* triggers grouped by their lower-cased first character */
    for (int a = 0; a < 128; a++) {
        g_red.first_start[a] = (unsigned short)filled;
        for (Py_ssize_t i = 0; i < nt; i++) {
            const char *t = PyBytes_AS_STRING(PyTuple_GET_ITEM(store, i));
            if ((LOWER((unsigned char)t[0]) & 127) == (unsigned)a)
                order[filled++] = (int)i;
        }
        g_red.first_count[a] = (unsigned short)(filled - g_red.first_start[a]);
        if (g_red.first_count[a]) {
            g_red.cls[a] |= CL_FIRST;
            if (a >= 'a' && a <= 'z')
                g_red.cls[a - 32] |= CL_FIRST;
        }
    }
    for (int slot = 0; slot < (int)nt; slot++) {
        Py_ssize_t i = order[slot];
        PyObject *b = PyTuple_GET_ITEM(store, i);
        char *t = PyBytes_AS_STRING(b);
        Py_ssize_t len = PyBytes_GET_SIZE(b);
        int cs = 0;
        for (Py_ssize_t j = 0; j < len; j++)
            cs |= t[j] >= 'A' && t[j] <= 'Z';
        if (!cs)
            for (Py_ssize_t j = 0; j < len; j++)
                t[j] = (char)LOWER((unsigned char)t[j]);
        g_red.trig[slot] = t;
        g_red.trig_len[slot] = len;
        g_red.trig_cs[slot] = (char)cs;
        g_red.needs[slot] = PyBytes_AS_STRING(PyTuple_GET_ITEM(store, nt + i));
        unsigned a = LOWER((unsigned char)t[0]) & 127; /* looked up lower-cased (a superset) */
        if (len == 1) {
            memset(g_red.pair[a], 0xff, sizeof g_red.pair[a]);
        } else {
            unsigned b2 = LOWER((unsigned char)t[1]) & 127;
            g_red.pair[a][b2 >> 3] |= (unsigned char)(1u << (b2 & 7));
        }
    }
    g_red.enabled = enabled;
    g_red.card = card;
    g_red.b64run = b64run;
    g_red.always = always;
    g_red.min_len = min_len < 1 ? 1 : min_len;
    g_red.slack = slack < 0 ? 0 : slack;
    Py_RETURN_NONE;
}

static PyObject *render(Renderer *r, PyObject *v, Py_ssize_t depth);

static PyObject *with_ellipsis(PyObject *text) { /* steals text */
    if (text == NULL)
        return NULL;
    PyObject *out = PyUnicode_Concat(text, g_ellipsis);
    Py_DECREF(text);
    return out;
}

/* repr(value[:max_chars]) + ("…" if it was cut) for str, bytes and bytearray */
static PyObject *render_cut(Renderer *r, PyObject *v, Py_ssize_t n) {
    if (n <= r->lim->max_chars)
        return PyObject_Repr(v);
    PyObject *head = PyUnicode_CheckExact(v) ? PyUnicode_Substring(v, 0, r->lim->max_chars)
                                             : PySequence_GetSlice(v, 0, r->lim->max_chars);
    if (head == NULL)
        return NULL;
    PyObject *text = PyObject_Repr(head);
    Py_DECREF(head);
    return with_ellipsis(text);
}

/* A str / bytes / bytearray leaf as values._render_text renders it: its first max_chars + slack
 * characters go through the policy when the scan finds a trigger, then the cut. */
static PyObject *render_leaf(Renderer *r, PyObject *v, Py_ssize_t n) {
    if (!g_red.enabled || n < g_red.min_len)
        return render_cut(r, v, n);
    Py_ssize_t cap = r->lim->max_chars, bound = cap + g_red.slack;
    int is_str = PyUnicode_CheckExact(v);
    PyObject *head = n <= bound ? Py_NewRef(v) : is_str ? PyUnicode_Substring(v, 0, bound)
                                                       : PySequence_GetSlice(v, 0, bound);
    if (head == NULL)
        return NULL;
    int hit = scan_text(head);
    if (hit <= 0) {
        Py_DECREF(head);
        return hit < 0 ? NULL : render_cut(r, v, n);
    }
    PyObject *red = PyObject_CallOneArg(is_str ? g_red.redact_text : g_red.redact_bytes, head);
    Py_DECREF(head);
    if (red == NULL)
        return NULL;
    if (is_str ? !PyUnicode_CheckExact(red) : !PyBytes_Check(red)) {
        Py_DECREF(red);
        PyErr_SetString(PyExc_TypeError, "redact must return the type it was given");
        return NULL;
    }
    if (PyByteArray_CheckExact(v)) { /* bytearray(b'...') */
        PyObject *as = PyByteArray_FromObject(red);
        Py_DECREF(red);
        if ((red = as) == NULL)
            return NULL;
    }
    Py_ssize_t m = is_str ? PyUnicode_GET_LENGTH(red) : PySequence_Size(red);
    PyObject *out;
    if (n > bound || m > cap) {
        PyObject *cut = is_str ? PyUnicode_Substring(red, 0, cap) : PySequence_GetSlice(red, 0, cap);
        out = cut == NULL ? NULL : with_ellipsis(PyObject_Repr(cut));
        Py_XDECREF(cut);
    } else {
        out = PyObject_Repr(red);
    }
    Py_DECREF(red);
    return out;
}

/* One item (or "key: value") into parts; returns its length, -1 on error or unsupported. */
static Py_ssize_t add_part(Renderer *r, PyObject *parts, PyObject *key, PyObject *item, Py_ssize_t depth,
                           int redacted) {
    PyObject *k = NULL, *text;
    if (key != NULL && (k = render(r, key, depth + 1)) == NULL) /* the key first: they share the budget */
        return -1;
    if ((text = redacted ? Py_NewRef(g_redacted) : render(r, item, depth + 1)) == NULL) {
        Py_XDECREF(k);
        return -1;
    }
    if (k != NULL) {
        PyObject *pair = PyUnicode_FromFormat("%U: %U", k, text);
        Py_DECREF(k);
        Py_DECREF(text);
        if ((text = pair) == NULL)
            return -1;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    int rc = PyList_Append(parts, text);
    Py_DECREF(text);
    return rc < 0 ? -1 : len;
}

/* values._render_container for an exact list, tuple, dict, set or frozenset */
static PyObject *render_container(Renderer *r, PyObject *v, PyTypeObject *t, Py_ssize_t depth) {
    Py_ssize_t n = PyObject_Length(v); /* exact builtin: no user code */
    Py_ssize_t count = n < r->lim->max_items ? n : r->lim->max_items;
    PyObject *parts = PyList_New(0);
    if (n < 0 || parts == NULL)
        goto error;
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        for (Py_ssize_t i = 0; i < count && PyDict_Next(v, &pos, &key, &item); i++) {
            Py_INCREF(key);
            Py_INCREF(item);
            int secret = PyUnicode_CheckExact(key) ? secret_name(key) : 0;
            Py_ssize_t len = secret < 0 ? -1 : add_part(r, parts, key, item, depth, secret);
            Py_DECREF(key);
            Py_DECREF(item);
            if (len < 0)
                goto error;
            if ((r->left -= len) <= 0)
                break;
        }
    } else {
        PyObject *it = PyObject_GetIter(v);
        if (it == NULL)
            goto error;
        /* a (name, value) pair whose name looks like a secret (headers as a list of tuples) */
        int pair = t == &PyTuple_Type && n == 2 && PyUnicode_CheckExact(PyTuple_GET_ITEM(v, 0));
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *item = PyIter_Next(it);
            if (item == NULL)
                break;
            int secret = pair && i == 1 ? secret_name(PyTuple_GET_ITEM(v, 0)) : 0;
            Py_ssize_t len = secret < 0 ? -1 : add_part(r, parts, NULL, item, depth, secret);
            Py_DECREF(item);
            if (len < 0) {
                Py_DECREF(it);
                goto error;
            }
            if ((r->left -= len) <= 0)
                break;
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            goto error;
    }
    Py_ssize_t shown = PyList_GET_SIZE(parts);
    if (shown < n) {
        PyObject *more = PyUnicode_FromFormat("%U%zd more", g_ellipsis, n - shown);
        if (more == NULL || PyList_Append(parts, more) < 0) {
            Py_XDECREF(more);
            goto error;
        }
        Py_DECREF(more);
    }
    PyObject *body = PyUnicode_Join(g_comma, parts);
    Py_DECREF(parts);
    if (body == NULL)
        return NULL;
    PyObject *out;
    if (t == &PyList_Type)
        out = PyUnicode_FromFormat("[%U]", body);
    else if (t == &PyTuple_Type)
        out = PyUnicode_FromFormat(n == 1 ? "(%U,)" : "(%U)", body);
    else if (t == &PyDict_Type)
        out = PyUnicode_FromFormat("{%U}", body);
    else if (n == 0)
        out = PyUnicode_FromString(t == &PySet_Type ? "set()" : "frozenset()");
    else
        out = PyUnicode_FromFormat(t == &PySet_Type ? "{%U}" : "frozenset({%U})", body);
    Py_DECREF(body);
    return out;
error:
    Py_XDECREF(parts);
    return NULL;
}

/* values._render; NULL with r->unsupported set (no exception) when the value is not for C */
/* A class whose metaclass hashes and compares it as ``type`` does (type itself, abc.ABCMeta, any
 * metaclass not defining __hash__/__eq__): a dict lookup of it runs no user code. */
static inline int plain_hashed_class(PyTypeObject *t) {
    PyTypeObject *meta = Py_TYPE((PyObject *)t);
    return meta == &PyType_Type ||
           (meta->tp_hash == PyType_Type.tp_hash && meta->tp_richcompare == PyType_Type.tp_richcompare);
}

/* "<class 'module.qualname'>" (values._type_name): the module left out for builtins and none */
static PyObject *render_class(Renderer *r, PyObject *cls) {
    PyObject *module = PyObject_GetAttrString(cls, "__module__");
    if (module == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear();
    }
    PyObject *qualname = PyObject_GetAttrString(cls, "__qualname__");
    PyObject *out = NULL;
    if (qualname == NULL || !PyUnicode_CheckExact(qualname) ||
        (module != NULL && module != Py_None && !PyUnicode_CheckExact(module))) {
        if (qualname != NULL || !PyErr_Occurred())
            r->unsupported = 1; /* a module or name of another type: formatted by Python */
    } else if (module == NULL || module == Py_None || PyUnicode_GET_LENGTH(module) == 0 ||
               PyUnicode_CompareWithASCIIString(module, "builtins") == 0) {
        out = PyUnicode_FromFormat("<class '%U'>", qualname);
    } else {
        out = PyUnicode_FromFormat("<class '%U.%U'>", module, qualname);
    }
    Py_XDECREF(module);
    Py_XDECREF(qualname);
    return out;
}

/* values._type_name of a class of the plain metaclass; NULL with r->unsupported set when a name is
 * not a str (Python formats it) */
static PyObject *type_name(Renderer *r, PyTypeObject *t) {
    PyObject *module = PyObject_GetAttrString((PyObject *)t, "__module__");
    if (module == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear();
    }
    PyObject *qualname = PyObject_GetAttrString((PyObject *)t, "__qualname__"), *out = NULL;
    if (qualname == NULL || !PyUnicode_CheckExact(qualname) ||
        (module != NULL && module != Py_None && !PyUnicode_CheckExact(module))) {
        if (qualname != NULL || !PyErr_Occurred())
            r->unsupported = 1;
    } else if (module == NULL || module == Py_None || PyUnicode_GET_LENGTH(module) == 0 ||
               PyUnicode_CompareWithASCIIString(module, "builtins") == 0) {
        out = Py_NewRef(qualname);
    } else {
        out = PyUnicode_FromFormat("%U.%U", module, qualname);
    }
    Py_XDECREF(module);
    Py_XDECREF(qualname);
    return out;
}

static PyObject *render_exception(Renderer *r, PyObject *v, Py_ssize_t depth) {
    PyObject *args = ((PyBaseExceptionObject *)v)->args; /* BaseException.args, not the object's getattr */
    if (args == NULL || !PyTuple_CheckExact(args)) {
        r->unsupported = 1;
        return NULL;
    }
    PyObject *name = type_name(r, Py_TYPE(v));
    if (name == NULL)
        return NULL;
    Py_INCREF(args);
    r->nesting++;
    PyObject *inner = render(r, args, depth + 1);
    r->nesting--;
    Py_DECREF(args);
    PyObject *out = NULL;
    if (inner != NULL) { /* [1:-1].rstrip(",") */
        Py_ssize_t end = PyUnicode_GET_LENGTH(inner) - 1;
        while (end > 1 && PyUnicode_READ_CHAR(inner, end - 1) == ',')
            end--;
        PyObject *body = end > 1 ? PyUnicode_Substring(inner, 1, end) : PyUnicode_New(0, 0);
        if (body != NULL)
            out = PyUnicode_FromFormat("%U(%U)", name, body);
        Py_XDECREF(body);
        Py_DECREF(inner);
    }
    Py_DECREF(name);
    return out;
}

static PyObject *render(Renderer *r, PyObject *v, Py_ssize_t depth) {
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type)
        return render_leaf(r, v, PyUnicode_GET_LENGTH(v));
    if (t == &PyLong_Type) {
        size_t bits = _PyLong_NumBits(v);
        if (bits == (size_t)-1 && PyErr_Occurred())
            return NULL;
        if (bits > 256)
            return PyUnicode_FromFormat("<int of %zu bits>", bits);
        PyObject *text = PyObject_Repr(v);
        if (text != NULL && bits >= 40 && g_red.enabled) { /* 13 digits or more: a card number? */
            int hit = scan_text(text);
            if (hit != 0) {
                PyObject *red = hit < 0 ? NULL : PyObject_CallOneArg(g_red.redact_text, text);
                Py_DECREF(text);
                text = red;
            }
        }
        return text;
    }
    if (v == Py_None || t == &PyBool_Type || t == &PyFloat_Type || t == &PyComplex_Type || v == Py_Ellipsis ||
        t == &PyRange_Type)
        return PyObject_Repr(v);
    if (t == &PySlice_Type) { /* its repr is its members': only ints and None here (never user code) */
        PySliceObject *s = (PySliceObject *)v;
        PyObject *parts[3] = {s->start, s->stop, s->step};
        for (int i = 0; i < 3; i++) {
            if (parts[i] != Py_None && !PyLong_CheckExact(parts[i])) {
                r->unsupported = 1;
                return NULL;
            }
        }
        return PyObject_Repr(v);
    }
    if (t == &PyBytes_Type)
        return render_leaf(r, v, PyBytes_GET_SIZE(v));
    if (t == &PyByteArray_Type)
        return render_leaf(r, v, PyByteArray_GET_SIZE(v));
    if (t == &PyList_Type || t == &PyTuple_Type || t == &PyDict_Type || t == &PySet_Type ||
        t == &PyFrozenSet_Type) {
        for (int i = 0; i < r->nseen; i++) {
            if (r->seen[i] == v)
                return PyUnicode_FromString(t == &PyList_Type ? "[...]"
                                            : t == &PyDict_Type || t == &PySet_Type ? "{...}" : "(...)");
        }
        if (depth >= r->lim->max_depth)
            return PyUnicode_FromFormat("<%s of %zd>", t->tp_name, PyObject_Length(v));
        if (r->nseen == SEEN_MAX) {
            r->unsupported = 1;
            return NULL;
        }
        r->seen[r->nseen++] = v;
        PyObject *out = render_container(r, v, t, depth);
        r->nseen--;
        return out;
    }
    if (t == g_deque && r->nesting < NESTING_MAX) {
        PyObject *items = PySequence_List(v);
        if (items == NULL)
            return NULL;
        r->nesting++;
        PyObject *body = render_container(r, items, &PyList_Type, depth);
        r->nesting--;
        Py_DECREF(items);
        if (body == NULL)
            return NULL;
        PyObject *out = PyUnicode_FromFormat("deque(%U)", body);
        Py_DECREF(body);
        return out;
    }
    /* functions, bound methods of functions, builtin functions and classes, as values._render gives
     * them; none of these reads runs user code (attributes of the plain metaclass and of functions) */
    if (t == &PyFunction_Type)
        return PyUnicode_FromFormat("<function %U>", ((PyFunctionObject *)v)->func_qualname);
    if (t == &PyMethod_Type && Py_IS_TYPE(PyMethod_GET_FUNCTION(v), &PyFunction_Type))
        return PyUnicode_FromFormat("<function %U>", ((PyFunctionObject *)PyMethod_GET_FUNCTION(v))->func_qualname);
    if (t == &PyCFunction_Type) { /* its repr names it and its self's type; a secret there: Python's way */
        PyObject *text = PyObject_Repr(v);
        if (text == NULL)
            return NULL;
        int hit = g_red.enabled ? scan_text(text) : 0;
        if (hit == 0 && PyUnicode_GET_LENGTH(text) <= r->lim->max_chars)
            return text;
        Py_DECREF(text);
        if (hit < 0)
            return NULL;
        r->unsupported = 1;
        return NULL;
    }
    if (t == &PyType_Type) /* a class whose metaclass is type itself */
        return render_class(r, v);
    /* an exception, as values._render: "module.Class(" its args' text without the tuple's brackets
     * and trailing comma ")"; only of a class of the plain metaclass (its names read run no user code) */
    if (PyExceptionInstance_Check(v) && Py_IS_TYPE((PyObject *)t, &PyType_Type) && !PyList_Check(v) &&
        !PyTuple_Check(v) && !PyDict_Check(v) && !PyAnySet_Check(v) && r->nesting < NESTING_MAX)
        return render_exception(r, v, depth);
    /* an instance of a class the Python renderer showed opaque (values._opaque_by_type); only classes
     * whose hash and equality in the dict run no user code */
    if (g_opaque_names != NULL && plain_hashed_class(t)) {
        PyObject *name = PyDict_GetItemWithError(g_opaque_names, (PyObject *)t); /* borrowed */
        if (name != NULL && PyUnicode_Check(name)) {
            char addr[2 + 2 * sizeof(void *) + 1];
            snprintf(addr, sizeof addr, "0x%" PRIxPTR, (uintptr_t)v);
            return PyUnicode_FromFormat("<%U object at %s>", name, addr);
        }
        if (name == NULL && PyErr_Occurred())
            return NULL;
    }
    r->unsupported = 1;
    return NULL;
}

PyObject *repr_opaque_name(PyObject *v) {
    PyTypeObject *t = Py_TYPE(v);
    /* the types render() handles before it looks the class up (none is ever learnt opaque) */
    if (g_opaque_names == NULL || t == &PyUnicode_Type || t == &PyLong_Type || v == Py_None || t == &PyBool_Type ||
        t == &PyFloat_Type || t == &PyComplex_Type || v == Py_Ellipsis || t == &PyRange_Type || t == &PySlice_Type ||
        t == &PyBytes_Type || t == &PyByteArray_Type || t == &PyList_Type || t == &PyTuple_Type ||
        t == &PyDict_Type || t == &PySet_Type || t == &PyFrozenSet_Type || t == g_deque || t == &PyFunction_Type ||
        t == &PyMethod_Type || t == &PyCFunction_Type || t == &PyType_Type || PyExceptionInstance_Check(v) ||
        !plain_hashed_class(t))
        return NULL;
    PyObject *name = PyDict_GetItemWithError(g_opaque_names, (PyObject *)t); /* borrowed */
    return name != NULL && PyUnicode_Check(name) ? name : NULL;
}

PyObject *repr_bounded(PyObject *value, const ReprLimits *limits) {
    Renderer r = {.lim = limits, .left = limits->max_chars};
    PyObject *text = render(&r, value, 0);
    if (text == NULL) {
        if (PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_MemoryError))
                return NULL;
            PyErr_Clear(); /* the Python renderer says what failed, the way it always does */
        }
        Py_RETURN_NONE;
    }
    if (PyUnicode_GET_LENGTH(text) > limits->max_chars) {
        PyObject *head = PyUnicode_Substring(text, 0, limits->max_chars - 1);
        Py_DECREF(text);
        return with_ellipsis(head);
    }
    return text;
}
