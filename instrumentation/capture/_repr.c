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
static PyObject *g_ellipsis, *g_comma;

int repr_init(void) {
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL)
        return -1;
    g_deque = (PyTypeObject *)PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    g_ellipsis = PyUnicode_FromString("\xe2\x80\xa6");
    g_comma = PyUnicode_InternFromString(", ");
    return g_deque != NULL && g_ellipsis != NULL && g_comma != NULL ? 0 : -1;
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

/* One item (or "key: value") into parts; returns its length, -1 on error or unsupported. */
static Py_ssize_t add_part(Renderer *r, PyObject *parts, PyObject *key, PyObject *item, Py_ssize_t depth) {
    PyObject *k = NULL, *text;
    if (key != NULL && (k = render(r, key, depth + 1)) == NULL) /* the key first: they share the budget */
        return -1;
    if ((text = render(r, item, depth + 1)) == NULL) {
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
            Py_ssize_t len = add_part(r, parts, key, item, depth);
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
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *item = PyIter_Next(it);
            if (item == NULL)
                break;
            Py_ssize_t len = add_part(r, parts, NULL, item, depth);
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
static PyObject *render(Renderer *r, PyObject *v, Py_ssize_t depth) {
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type)
        return render_cut(r, v, PyUnicode_GET_LENGTH(v));
    if (t == &PyLong_Type) {
        size_t bits = _PyLong_NumBits(v);
        if (bits == (size_t)-1 && PyErr_Occurred())
            return NULL;
        if (bits > 256)
            return PyUnicode_FromFormat("<int of %zu bits>", bits);
        return PyObject_Repr(v);
    }
    if (v == Py_None || t == &PyBool_Type || t == &PyFloat_Type || t == &PyComplex_Type)
        return PyObject_Repr(v);
    if (t == &PyBytes_Type)
        return render_cut(r, v, PyBytes_GET_SIZE(v));
    if (t == &PyByteArray_Type)
        return render_cut(r, v, PyByteArray_GET_SIZE(v));
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
    r->unsupported = 1;
    return NULL;
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
