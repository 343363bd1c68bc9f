/* The native accelerator of the fast capture core (see fast_capture.py, which chooses it at import
 * and falls back to the pure-Python core, with a logged reason, when this module cannot be loaded).
 *
 * It provides, with the same attribute names as the Python core so that the rest of fast_capture.py
 * works on either:
 *   Frame     one recorded call (the Python core's FastFrame), with C fields for ids and clocks;
 *   State     the threads' buffers of finished frames and the sampling and budget settings;
 *   Sequence  the process-wide event sequence (``next()``), shared with the SDK core;
 *   Gate      an object whose truth value says whether a new call may be recorded: false while the
 *             current chain is a trace left out by head sampling, so rewritten code skips every hook
 *             of a sampled-out call after one truth test;
 *   enter / enter_module / ret / leave / ret_current / fail_current / leave_current   the hot-path hooks;
 *   encode_spans   OTLP protobuf encoding of finished frames (ScopeSpans.spans fields).
 *
 * Contract of the hooks: called with the GIL held on the program's thread; they never raise (a
 * failure is handed to the ``failed`` callback and the call is not recorded) and never block.
 */
#define PY_SSIZE_T_CLEAN
#include <patchlevel.h>
/* On CPython 3.11 the running thread state is read with one load, as CPython itself does
 * (_PyThreadState_GET, an internal header), instead of a call into libpython: the gate does it at
 * every call of a sampled-out trace. Other versions, or EXECSCOPE_NO_INTERNAL, use the public call. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && !defined(EXECSCOPE_NO_INTERNAL) && \
    defined(__has_include)
#if __has_include(<internal/pycore_pystate.h>) /* some distributions leave the internal headers out */
#define Py_BUILD_CORE_MODULE 1
#define EXECSCOPE_FAST_TSTATE 1
#endif
#endif
#include <Python.h>
#ifdef EXECSCOPE_FAST_TSTATE
#include "internal/pycore_pystate.h"
#define FAST_TSTATE() _PyThreadState_GET()
#else
#define FAST_TSTATE() PyThreadState_Get()
#endif
/* The interpreter frame of the Python code calling a hook: compared, never dereferenced (see
 * own_entry). A public field of the thread state on 3.11-3.12 (cframe) and 3.13+. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000
#define CALLER_FRAME() ((void *)FAST_TSTATE()->cframe->current_frame)
#elif PY_VERSION_HEX >= 0x030D0000
#define CALLER_FRAME() ((void *)FAST_TSTATE()->current_frame)
#else
#define CALLER_FRAME() ((void *)PyEval_GetFrame())
#endif
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

#include "_repr.h"

/* Thread-locals are initial-exec: read at a fixed offset from the thread pointer, not through
 * __tls_get_addr (their ~90 bytes fit glibc's static TLS surplus kept for dlopen'ed modules; if
 * they ever did not, the import fails and the pure-Python core runs, with the reason logged). */
#if defined(__GNUC__) && defined(__ELF__)
#define TLS_FAST __attribute__((tls_model("initial-exec")))
#else
#define TLS_FAST
#endif

/* ---------------------------------------------------------------- configuration (set once) */
static PyObject *g_current;      /* runtime._current (ContextVar) */
static PyObject *g_otel_var;     /* OpenTelemetry's context ContextVar, or NULL */
static PyObject *g_span_key;     /* key of the current span in an OTel Context */
static PyObject *g_otel_current; /* fallback: callable() -> current OTel span or None */
static PyObject *g_parent_of;    /* callable(span) -> None (no valid context) | False (not sampled) | (trace, span) */
static PyObject *g_snapshot;     /* callable(value) -> Rendered: values C does not render (_repr.c) */
static PyObject *g_failed;       /* callable(exc): counts a hook failure */
static PyObject *g_root_end;     /* callable() -> runtime._on_root_end (may be None) */
static PyObject *g_event;        /* callable(frame, kind, node_id): a yield/resume event (fast_capture._event) */
static PyObject *g_ev_yield, *g_ev_resume; /* their kinds */
static PyObject *g_no_frame;     /* what a hook returns when nothing is recorded */
static PyObject *g_sequence;     /* the process-wide Sequence */
static PyObject *g_rendered_type;
static PyObject *g_kind_call, *g_kind_module;
static PyObject *g_head_cache;   /* dict: id(info) -> (info, name_field, head, arg_keys, secrets) */
static Py_ssize_t g_max_chars = 256;
static ReprLimits g_limits = {256, 8, 3}; /* values.DEFAULT_LIMITS */
static struct StateObject *g_state;

/* ---------------------------------------------------------------- ids and clocks */
static uint64_t rng_state;

static void reseed_rng(void) {
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)getpid();
    }
    rng_state = seed;
}

static inline uint64_t random64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void report_failure(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (g_failed != NULL && value != NULL) {
        PyObject *r = PyObject_CallOneArg(g_failed, value);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* ---------------------------------------------------------------- Sequence */
typedef struct {
    PyObject_HEAD
    long long value;
} SequenceObject;

static PyObject *sequence_next(SequenceObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromLongLong(self->value++);
}

static PyMethodDef sequence_methods[] = {
    {"next", (PyCFunction)sequence_next, METH_NOARGS, "The next number (atomic under the GIL)."},
    {NULL},
};

static PyTypeObject SequenceType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "execscope.instrumentation.capture._capture.Sequence",
    .tp_basicsize = sizeof(SequenceObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A strictly increasing counter; next() is atomic under the GIL.",
    .tp_methods = sequence_methods,
    .tp_new = PyType_GenericNew,
};

static inline long long seq_next(PyObject *seq) {
    if (Py_TYPE(seq) == &SequenceType)
        return ((SequenceObject *)seq)->value++;
    PyObject *r = PyObject_CallMethod(seq, "next", NULL);
    if (r == NULL)
        return -1;
    long long v = PyLong_AsLongLong(r);
    Py_DECREF(r);
    return v;
}

/* ---------------------------------------------------------------- State */
typedef struct StateObject {
    PyObject_HEAD
    PyObject *buffers;     /* every thread's buffer of finished frames (see thread_buffer) */
    Py_ssize_t n_pending;  /* frames in them, all threads together */
    Py_ssize_t max_pending;
    long long dropped, sampled_out, events, max_events, rate, rate_window, rate_used, adaptive;
    unsigned long long sample_cut;
    PyObject *root_sampler;
    char paused, sample_all;
} StateObject;

static int state_init(StateObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_pending", "max_events", NULL};
    Py_ssize_t max_pending;
    long long max_events;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nL", kwlist, &max_pending, &max_events))
        return -1;
    Py_XSETREF(self->buffers, PyList_New(0));
    if (self->buffers == NULL)
        return -1;
    self->n_pending = 0;
    self->max_pending = max_pending;
    self->max_events = max_events;
    self->sample_all = 1;
    return 0;
}

static void state_dealloc(StateObject *self) {
    Py_XDECREF(self->buffers);
    Py_XDECREF(self->root_sampler);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Per-thread buffers. A thread appends its finished frames to its own list, kept in its thread
 * state's dict (CPython clears that dict when the thread ends) and listed in state->buffers for the
 * worker. Looked up in the dict at every append (a pointer-keyed lookup): a cached pointer could
 * outlive the list when finalizers run code after the dict was cleared. A buffer only the registry
 * still holds belongs to an ended thread: dropped once taken. The bound (max_pending) is on all
 * buffers together. */
static PyObject *thread_buffer(StateObject *state) { /* borrowed; NULL with an exception */
    PyObject *dict = PyThreadState_GetDict();
    if (dict == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no thread state dict");
        return NULL;
    }
    PyObject *buf = PyDict_GetItemWithError(dict, (PyObject *)state);
    if (buf != NULL || PyErr_Occurred())
        return buf;
    if ((buf = PyList_New(0)) == NULL)
        return NULL;
    if (PyDict_SetItem(dict, (PyObject *)state, buf) < 0 || PyList_Append(state->buffers, buf) < 0) {
        Py_DECREF(buf);
        return NULL;
    }
    Py_DECREF(buf); /* the dict's and the registry's references remain */
    return buf;
}

/* Buffer a finished frame for the worker, or count it dropped when the buffers are full. An
 * ``anchor`` (a thread's outermost recorded call, a call with recorded children, a tally) may also
 * take the reserve of max_pending / 64 slots above the bound: when a hot thread fills the buffers,
 * the calls that hold a trace together (a program's main(), a test's caller of the hot leaves) are
 * still kept. As _State.buffer_frame. */
static int buffer_frame(StateObject *state, PyObject *frame, int anchor) {
    if (state->n_pending >= state->max_pending
            && (!anchor || state->n_pending >= state->max_pending + (state->max_pending >> 6))) {
        state->dropped++;
        return 0;
    }
    PyObject *buf = thread_buffer(state);
    if (buf == NULL || PyList_Append(buf, frame) < 0)
        return -1;
    state->n_pending++;
    return 0;
}

/* take() -> list: every thread's finished frames (each thread's in the order they finished); the
 * buffers are left empty. Atomic under the GIL: nothing here runs Python code. */
static PyObject *state_take(StateObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *all = PyList_New(0);
    if (all == NULL)
        return NULL;
    for (Py_ssize_t i = PyList_GET_SIZE(self->buffers) - 1; i >= 0; i--) {
        PyObject *buf = PyList_GET_ITEM(self->buffers, i);
        Py_ssize_t n = PyList_GET_SIZE(buf);
        /* the frames move: they stay referenced by ``all``, so clearing frees none of them */
        if (n && (PyList_SetSlice(all, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, buf) < 0 ||
                  PyList_SetSlice(buf, 0, n, NULL) < 0)) {
            Py_DECREF(all);
            return NULL;
        }
        if (Py_REFCNT(buf) == 1 && PyList_SetSlice(self->buffers, i, i + 1, NULL) < 0) { /* thread ended */
            Py_DECREF(all);
            return NULL;
        }
    }
    self->n_pending = 0;
    return all;
}

/* clear(): drop every buffered frame (a forked child: its parent exports them). */
static PyObject *state_clear_buffers(StateObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *taken = state_take(self, NULL);
    if (taken == NULL)
        return NULL;
    Py_DECREF(taken);
    Py_RETURN_NONE;
}

static PyMethodDef state_methods[] = {
    {"take", (PyCFunction)state_take, METH_NOARGS, "take() -> every thread's finished frames (buffers emptied)"},
    {"clear", (PyCFunction)state_clear_buffers, METH_NOARGS, "clear(): drop every buffered frame"},
    {NULL},
};

static PyMemberDef state_members[] = {
    {"n_pending", T_PYSSIZET, offsetof(StateObject, n_pending), READONLY, "finished frames waiting, all threads"},
    {"buffers", T_OBJECT, offsetof(StateObject, buffers), READONLY, "the threads' buffers (read-only view)"},
    {"max_pending", T_PYSSIZET, offsetof(StateObject, max_pending), 0, NULL},
    {"dropped", T_LONGLONG, offsetof(StateObject, dropped), 0, "frames lost to a full buffer"},
    {"sampled_out", T_LONGLONG, offsetof(StateObject, sampled_out), 0, "traces left out by head sampling"},
    {"events", T_LONGLONG, offsetof(StateObject, events), 0, NULL},
    {"max_events", T_LONGLONG, offsetof(StateObject, max_events), 0, NULL},
    {"rate", T_LONGLONG, offsetof(StateObject, rate), 0, NULL},
    {"rate_window", T_LONGLONG, offsetof(StateObject, rate_window), 0, NULL},
    {"rate_used", T_LONGLONG, offsetof(StateObject, rate_used), 0, NULL},
    {"sample_cut", T_ULONGLONG, offsetof(StateObject, sample_cut), 0,
     "keep a trace when the low 64 bits of its id are below this (as TraceIdRatioBased)"},
    {"root_sampler", T_OBJECT, offsetof(StateObject, root_sampler), 0,
     "None, or callable(trace_id) -> bool deciding each new trace instead of sample_cut"},
    {"sample_all", T_BOOL, offsetof(StateObject, sample_all), 0, "keep every trace"},
    {"paused", T_BOOL, offsetof(StateObject, paused), 0, NULL},
    {"adaptive", T_LONGLONG, offsetof(StateObject, adaptive), 0,
     "per-node adaptive sampling: calls of a node recorded at full rate (0: every call is recorded)"},
    {NULL},
};

static PyTypeObject StateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "execscope.instrumentation.capture._capture.State",
    .tp_basicsize = sizeof(StateObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Process-wide buffer of finished frames, sampling and budgets.",
    .tp_members = state_members,
    .tp_methods = state_methods,
    .tp_init = (initproc)state_init,
    .tp_dealloc = (destructor)state_dealloc,
    .tp_new = PyType_GenericNew,
};

/* ---------------------------------------------------------------- Frame */
typedef struct FrameObject {
    PyObject_HEAD
    uint64_t trace_hi, trace_lo, span_id, parent_id;
    long long start, end, seq0, seq1, child_ns, dropped_events;
    PyObject *info, *args, *ret, *events, *seq, *outer, *anchor, *error, *exit, *kind;
    PyObject *unrecorded; /* {node_id: calls} left out below this recorded call (adaptive sampling) */
    PyObject *unrecorded_events; /* {node_id: statement events} those calls' hooks saw */
    PyObject *counted_in; /* of an unrecorded call: the recorded frame that counts it */
    long long counted_events; /* of an unrecorded call: statement events its hooks saw so far */
    void *pyframe;        /* the interpreter frame that entered the call (identity only; see own_entry) */
    char has_ret, foreign, skip, counting;
} FrameObject;

static PyTypeObject FrameType;
#define Frame_Check(o) (Py_TYPE(o) == &FrameType || PyObject_TypeCheck(o, &FrameType))

static int frame_clear(FrameObject *self) {
    Py_CLEAR(self->info);
    Py_CLEAR(self->args);
    Py_CLEAR(self->ret);
    Py_CLEAR(self->events);
    Py_CLEAR(self->seq);
    Py_CLEAR(self->outer);
    Py_CLEAR(self->anchor);
    Py_CLEAR(self->error);
    Py_CLEAR(self->exit);
    Py_CLEAR(self->kind);
    Py_CLEAR(self->unrecorded);
    Py_CLEAR(self->unrecorded_events);
    Py_CLEAR(self->counted_in);
    return 0;
}

static void frame_dealloc(FrameObject *self) {
    frame_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *frame_get_trace_id(FrameObject *self, void *closure) {
    PyObject *hi = PyLong_FromUnsignedLongLong(self->trace_hi);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *lo = PyLong_FromUnsignedLongLong(self->trace_lo);
    PyObject *r = NULL, *t = NULL;
    if (hi && shift && lo && (t = PyNumber_Lshift(hi, shift)) != NULL)
        r = PyNumber_Or(t, lo);
    Py_XDECREF(hi);
    Py_XDECREF(shift);
    Py_XDECREF(lo);
    Py_XDECREF(t);
    return r;
}

static int set_trace_id(FrameObject *self, PyObject *value) {
    if (value == NULL || !PyLong_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "trace_id must be an int");
        return -1;
    }
    PyObject *shift = PyLong_FromLong(64);
    PyObject *hi = shift ? PyNumber_Rshift(value, shift) : NULL;
    Py_XDECREF(shift);
    if (hi == NULL)
        return -1;
    self->trace_hi = PyLong_AsUnsignedLongLongMask(hi);
    Py_DECREF(hi);
    self->trace_lo = PyLong_AsUnsignedLongLongMask(value);
    return PyErr_Occurred() ? -1 : 0;
}

static int frame_set_trace_id(FrameObject *self, PyObject *value, void *closure) {
    return set_trace_id(self, value);
}

static PyObject *frame_get_recording(PyObject *self, void *closure) { Py_RETURN_TRUE; }

static PyGetSetDef frame_getset[] = {
    {"trace_id", (getter)frame_get_trace_id, (setter)frame_set_trace_id, "128-bit trace id", NULL},
    {"recording", (getter)frame_get_recording, NULL, "always true (read by the SDK core's hooks)", NULL},
    {NULL},
};

#define FM(name, type) {#name, type, offsetof(FrameObject, name), 0, NULL}
static PyMemberDef frame_members[] = {
    FM(span_id, T_ULONGLONG), FM(parent_id, T_ULONGLONG),
    FM(start, T_LONGLONG), FM(end, T_LONGLONG), FM(seq0, T_LONGLONG), FM(seq1, T_LONGLONG),
    FM(child_ns, T_LONGLONG), FM(dropped_events, T_LONGLONG),
    FM(info, T_OBJECT), FM(args, T_OBJECT), FM(ret, T_OBJECT), FM(events, T_OBJECT), FM(seq, T_OBJECT),
    FM(outer, T_OBJECT), FM(anchor, T_OBJECT), FM(error, T_OBJECT), FM(exit, T_OBJECT), FM(kind, T_OBJECT),
    FM(unrecorded, T_OBJECT), FM(unrecorded_events, T_OBJECT), FM(counted_in, T_OBJECT),
    FM(has_ret, T_BOOL), FM(foreign, T_BOOL), {"skip", T_BOOL, offsetof(FrameObject, skip), READONLY, NULL},
    FM(counting, T_BOOL),
    {NULL},
};

static PyTypeObject FrameType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "execscope.instrumentation.capture._capture.Frame",
    .tp_basicsize = sizeof(FrameObject),
    /* Not collected by the cyclic GC: a frame refers to its caller chain, its OTel anchor and
     * immutable or already rendered values, never back to itself; leave() drops the chain. Keeping
     * it out of the collector's counts and walks matters on a path taken for every call. */
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One recorded call (fields as fast_capture.FastFrame).",
    .tp_dealloc = (destructor)frame_dealloc,
    .tp_members = frame_members,
    .tp_getset = frame_getset,
    .tp_new = PyType_GenericNew,
};

/* ---------------------------------------------------------------- the current frame
 *
 * The current frame lives in runtime._current (a ContextVar: one chain per asyncio task and thread).
 * Setting a ContextVar costs ~250 ns (a new HAMT and a Token), twice per call. So a synchronous
 * call only moves a per-thread cache of the current frame, trusted while the thread state, its
 * context version (bumped by CPython whenever a context is entered or left: another task, a
 * ``Context.run``) and the core (``g_epoch``, bumped when GATE's mode changes) are those it was
 * filled under; otherwise the variable is read again. Every write of the variable while this core
 * records goes through set_frame (``set_current`` from Python, used by thread_context too), so the
 * cache also knows the value the variable holds (``tl_value``).
 * The variable itself is set for what can be suspended across a context switch or copied into
 * another context while running: module bodies, ``async def`` frames (their info tuple carries a
 * true 7th item) and resumed generators while the variable holds them. A context copied while a
 * synchronous call runs (a task created by a plain helper function) therefore starts under the
 * nearest such frame instead of the helper. tl_frame holds a reference: a call whose ``leave`` never
 * ran (CPython raises RecursionError when it calls a C function too deep, before the function runs)
 * must not leave a freed frame current; the other pointers are compared, never dereferenced. A
 * thread that ends keeps its last reference (usually None). */
static uint64_t g_epoch = 1;
static _Thread_local PyThreadState *tl_ts TLS_FAST;
static _Thread_local uint64_t tl_id TLS_FAST, tl_ver TLS_FAST, tl_epoch TLS_FAST;
static _Thread_local PyObject *tl_value TLS_FAST, *tl_frame TLS_FAST;
static _Thread_local int tl_skip TLS_FAST; /* tl_frame is a sampled-out trace's root (read by the gate) */

static inline void cache_thread(PyThreadState *ts, PyObject *value) {
    tl_ts = ts;
    tl_id = ts->id;
    tl_ver = ts->context_ver;
    tl_epoch = g_epoch;
    tl_value = value;
}

static inline int cache_valid(PyThreadState *ts) {
    return ts == tl_ts && ts->id == tl_id && ts->context_ver == tl_ver && tl_epoch == g_epoch;
}

static PyObject *current_frame(void) { /* borrowed; NULL on error */
    PyThreadState *ts = FAST_TSTATE();
    if (cache_valid(ts))
        return tl_frame;
    PyObject *v = NULL;
    if (PyContextVar_Get(g_current, Py_None, &v) < 0)
        return NULL;
    cache_thread(ts, v);
    PyObject *old = tl_frame;
    tl_frame = v; /* our reference; the context holds another, so v outlives the release below */
    tl_skip = Py_TYPE(v) == &FrameType && ((FrameObject *)v)->skip;
    Py_XDECREF(old);
    return v;
}

/* Make ``value`` the current frame: in the variable when ``real``, else in the thread's cache only
 * (valid after current_frame() in the same hook, no Python code in between). */
static int set_frame(PyObject *value, int real) {
    if (real) {
        PyObject *token = PyContextVar_Set(g_current, value);
        if (token == NULL)
            return -1;
        Py_DECREF(token);
        cache_thread(PyThreadState_Get(), value);
    }
    PyObject *old = tl_frame;
    Py_INCREF(value);
    tl_frame = value;
    tl_skip = Py_TYPE(value) == &FrameType && ((FrameObject *)value)->skip;
    Py_XDECREF(old);
    return 0;
}

static inline int needs_context(PyObject *info, PyObject *kind) {
    return kind == g_kind_module || (PyTuple_GET_SIZE(info) > 6 && PyTuple_GET_ITEM(info, 6) == Py_True);
}

static PyObject *py_current(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    if (g_current == NULL)
        Py_RETURN_NONE;
    PyObject *f = current_frame();
    Py_XINCREF(f);
    return f;
}

/* Write the thread's cached current frame into the variable, so that a context copied now (an
 * asyncio task or callback) starts under it. */
static PyObject *py_sync_current(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    if (g_current == NULL)
        Py_RETURN_NONE;
    PyObject *top = current_frame();
    if (top == NULL || (top != tl_value && set_frame(top, 1) < 0))
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_set_current(PyObject *module, PyObject *frame) {
    if (g_current == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_capture is not configured");
        return NULL;
    }
    if (set_frame(frame, 1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- Gate */
static int g_gate_mode; /* 0: nothing records; 1: every call is offered to the core; 2: sampling */

static int gate_bool(PyObject *self) {
    if (g_gate_mode != 2 || g_current == NULL)
        return g_gate_mode != 0;
    /* every call of a sampled-out trace comes here: the cache hit is inlined */
    if (cache_valid(FAST_TSTATE()))
        return !tl_skip;
    if (current_frame() == NULL) {
        PyErr_Clear();
        return 1;
    }
    return !tl_skip;
}

static PyNumberMethods gate_as_number = {.nb_bool = gate_bool};

static PyTypeObject GateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "execscope.instrumentation.capture._capture.Gate",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "False while the current chain belongs to a trace left out by head sampling.",
    .tp_as_number = &gate_as_number,
    .tp_new = PyType_GenericNew,
};

/* ---------------------------------------------------------------- hooks */
static inline int is_immutable(PyObject *v) {
    PyTypeObject *t = Py_TYPE(v);
    return t == &PyLong_Type || t == &PyUnicode_Type || v == Py_None || t == &PyFloat_Type ||
           t == &PyBool_Type || t == &PyBytes_Type || t == &PyComplex_Type;
}

/* A Rendered str (a Python subclass: its instances are GC objects) holds no reference but to its
 * type: it can never be part of a cycle, so the collector is told to ignore it at once, as CPython
 * does for tuples of atoms. Kept until encoded, millions of them would otherwise age through the
 * collector's generations, walked by every collection and triggering full ones. */
static inline PyObject *untrack_rendered(PyObject *out) {
    if (out != NULL && (PyObject *)Py_TYPE(out) == g_rendered_type && PyObject_GC_IsTracked(out))
        PyObject_GC_UnTrack(out);
    return out;
}

/* Whether the collector may have to look inside ``o`` (CPython's _PyObject_GC_MAY_BE_TRACKED; a
 * tuple or Rendered only while tracked: neither is ever tracked again once untracked). */
static inline int may_be_tracked(PyObject *o) {
    return PyObject_IS_GC(o) && ((!PyTuple_CheckExact(o) && (PyObject *)Py_TYPE(o) != g_rendered_type) ||
                                 PyObject_GC_IsTracked(o));
}

/* The Rendered text of the instances of classes learnt opaque last met, by address: that text is
 * "<name object at 0x...>", a function of the class's name object (held here, so its identity is
 * not reused) and of the address alone, so the same object met again (a parser node's method
 * called with ``self`` a million times) is the same text; an object freed and another at its address
 * has the same text too, if its class has the same name object, and else misses. Cleared when the
 * limits change. */
#define OPAQUE_SLOTS 1024
typedef struct {
    void *obj;          /* identity only */
    PyObject *name;     /* held */
    PyObject *rendered; /* held */
} OpaqueSlot;
static OpaqueSlot g_opaque_slots[OPAQUE_SLOTS];

static void clear_opaque_slots(void) {
    for (int i = 0; i < OPAQUE_SLOTS; i++) {
        OpaqueSlot *slot = &g_opaque_slots[i];
        PyObject *name = slot->name, *rendered = slot->rendered;
        slot->obj = NULL;
        slot->name = slot->rendered = NULL;
        Py_XDECREF(name);
        Py_XDECREF(rendered);
    }
}

/* fast_capture.snapshot: the value itself when immutable, else its bounded text as a Rendered
 * str, made in C for builtin values (_repr.c) and by the Python renderer for the rest. */
static PyObject *snapshot(PyObject *v) {
    if (is_immutable(v))
        return Py_NewRef(v);
    PyObject *name = repr_opaque_name(v);
    OpaqueSlot *slot = NULL;
    if (name == NULL) {
        PyErr_Clear(); /* a failed lookup: as repr_bounded, the Python renderer says what failed */
    } else {
        slot = &g_opaque_slots[((uintptr_t)v >> 4) & (OPAQUE_SLOTS - 1)];
        if (slot->obj == (void *)v && slot->name == name)
            return Py_NewRef(slot->rendered);
        Py_INCREF(name);
    }
    PyObject *text = repr_bounded(v, &g_limits), *out;
    if (text == NULL) {
        out = NULL;
    } else if (text == Py_None) {
        Py_DECREF(text);
        out = untrack_rendered(PyObject_CallOneArg(g_snapshot, v));
    } else {
        out = untrack_rendered(PyObject_CallOneArg(g_rendered_type, text));
        Py_DECREF(text);
    }
    if (slot != NULL) {
        if (out != NULL && (PyObject *)Py_TYPE(out) == g_rendered_type) {
            PyObject *old_name = slot->name, *old_rendered = slot->rendered;
            slot->obj = (void *)v;
            slot->name = name; /* our reference */
            slot->rendered = Py_NewRef(out);
            Py_XDECREF(old_name);
            Py_XDECREF(old_rendered);
        } else {
            Py_DECREF(name);
        }
    }
    return out;
}

/* The snapshots of a call's arguments; the tuple untracked when nothing in it may be (as above). */
static PyObject *snapshot_args(PyObject *args) {
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *out = PyTuple_New(n);
    if (out == NULL)
        return NULL;
    int atoms = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = snapshot(PyTuple_GET_ITEM(args, i));
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        atoms = atoms && !may_be_tracked(v);
        PyTuple_SET_ITEM(out, i, v);
    }
    if (atoms && n && PyObject_GC_IsTracked(out))
        PyObject_GC_UnTrack(out);
    return out;
}

/* The current OpenTelemetry span (new reference; Py_None when there is none), NULL on error. */
static PyObject *otel_current(void) {
    if (g_otel_var == NULL)
        return PyObject_CallNoArgs(g_otel_current);
    PyObject *ctx = NULL;
    if (PyContextVar_Get(g_otel_var, NULL, &ctx) < 0)
        return NULL;
    if (ctx == NULL)
        Py_RETURN_NONE;
    PyObject *span;
    if (PyDict_Check(ctx)) {
        span = PyDict_GetItemWithError(ctx, g_span_key);
        if (span == NULL && PyErr_Occurred()) {
            Py_DECREF(ctx);
            return NULL;
        }
        span = span ? span : Py_None;
        Py_INCREF(span);
    } else {
        span = PyObject_CallMethod(ctx, "get", "O", g_span_key);
    }
    Py_DECREF(ctx);
    return span;
}

/* ---------------------------------------------------------------- adaptive sampling per node
 * Calls of a node (an info tuple) are all recorded until ``budget`` of them are; then one in 2,
 * one in 4, ... (the rate halves each time another ``budget`` are recorded, down to 1 in 2^20).
 * A call left out, and everything it calls, is counted instead: {node_id: calls} on the nearest
 * recorded caller, exported as its ``execscope.unrecorded.<node_id>`` attributes. A call made directly
 * under an application's OTel span (a test, a request) has no recorded caller: it is counted on a
 * tally, a span named by ``tally_info`` (``execscope.unrecorded``) under that OTel span, exported
 * when calls move under another span and at every export. Roots are never left out this way (head
 * sampling decides them), so every call is either a span or a count. */
typedef struct {
    PyObject *info; /* held */
    uint64_t calls, recorded, gen;
} NodeCount;

/* Budgets restart with every application trace (one test of a pytest session, one request): a
 * generation bumped whenever a call starts under an OTel span of another trace than the last one.
 * Traces execscope starts itself (no OTel span current) share the process's budgets. */
static uint64_t g_trace_gen = 1, g_last_hi, g_last_lo;

static inline void note_trace(uint64_t hi, uint64_t lo) {
    if (hi != g_last_hi || lo != g_last_lo) {
        g_last_hi = hi;
        g_last_lo = lo;
        g_trace_gen++;
    }
}

static NodeCount *g_nodes;
static size_t g_nodes_cap, g_nodes_len;

static NodeCount *node_count(PyObject *info) {
    if (2 * (g_nodes_len + 1) > g_nodes_cap) {
        size_t cap = g_nodes_cap ? 2 * g_nodes_cap : 1024;
        NodeCount *nodes = PyMem_Calloc(cap, sizeof(NodeCount));
        if (nodes == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        for (size_t i = 0; i < g_nodes_cap; i++) {
            if (g_nodes[i].info == NULL)
                continue;
            size_t j = ((uintptr_t)g_nodes[i].info >> 4) & (cap - 1);
            while (nodes[j].info != NULL)
                j = (j + 1) & (cap - 1);
            nodes[j] = g_nodes[i];
        }
        PyMem_Free(g_nodes);
        g_nodes = nodes;
        g_nodes_cap = cap;
    }
    size_t j = ((uintptr_t)info >> 4) & (g_nodes_cap - 1);
    while (g_nodes[j].info != NULL && g_nodes[j].info != info)
        j = (j + 1) & (g_nodes_cap - 1);
    if (g_nodes[j].info == NULL) {
        Py_INCREF(info);
        g_nodes[j].info = info;
        g_nodes_len++;
    }
    return &g_nodes[j];
}

/* 1: record this call of ``info``; 0: leave it out; -1: error */
static int adaptive_keep(PyObject *info, long long budget) {
    NodeCount *n = node_count(info);
    if (n == NULL)
        return -1;
    if (n->gen != g_trace_gen) {
        n->gen = g_trace_gen;
        n->calls = n->recorded = 0;
    }
    uint64_t call = n->calls++;
    int keep = 1;
    if (n->recorded >= (uint64_t)budget) {
        uint64_t k = 1 + (n->recorded - (uint64_t)budget) / (uint64_t)budget;
        keep = (call & ((1ULL << (k > 20 ? 20 : k)) - 1)) == 0;
    }
    n->recorded += keep;
    return keep;
}

/* A recorded call's events count toward its node's budget as calls do (each event as one call), so
 * that a statements-level recording keeps whole calls while bounding what a hot loop records; only
 * within the trace the budget belongs to. */
static int charge_events(FrameObject *f) {
    long long events = f->dropped_events;
    if (f->events != NULL && PyList_Check(f->events))
        events += PyList_GET_SIZE(f->events);
    if (events == 0 || f->info == NULL || !PyTuple_Check(f->info))
        return 0;
    NodeCount *n = node_count(f->info);
    if (n == NULL)
        return -1;
    if (n->gen == g_trace_gen)
        n->recorded += (uint64_t)events;
    return 0;
}

/* ``*counts``[node] += n (the dict made on first use). */
static int add_count(PyObject **counts, PyObject *node, long long n) {
    if (*counts == NULL && (*counts = PyDict_New()) == NULL)
        return -1;
    PyObject *old = PyDict_GetItemWithError(*counts, node);
    if (old == NULL && PyErr_Occurred())
        return -1;
    long long before = old == NULL ? 0 : PyLong_AsLongLong(old);
    if (before == -1 && PyErr_Occurred())
        return -1;
    PyObject *total = PyLong_FromLongLong(before + n);
    if (total == NULL)
        return -1;
    int rc = PyDict_SetItem(*counts, node, total);
    Py_DECREF(total);
    return rc;
}

/* A call left out by adaptive sampling ends: the statement events its hooks saw are added to its
 * carrier's ``unrecorded_events`` (``execscope.unrecorded_events.<node_id>``), so that events per call
 * are known over every call, not only the recorded ones (which the events' own budget biases to a
 * test's first, often smaller, calls). */
static void count_left_out_events(FrameObject *f) {
    if (f->counted_events <= 0 || f->counted_in == NULL || Py_TYPE(f->counted_in) != &FrameType
            || f->info == NULL || !PyTuple_Check(f->info) || PyTuple_GET_SIZE(f->info) < 1)
        return;
    if (add_count(&((FrameObject *)f->counted_in)->unrecorded_events, PyTuple_GET_ITEM(f->info, 0),
                  f->counted_events) < 0)
        report_failure();
    f->counted_events = 0;
}

static int count_unrecorded(FrameObject *carrier, PyObject *info) {
    return add_count(&carrier->unrecorded, PyTuple_GET_ITEM(info, 0), 1);
}

static PyObject *g_tally_info;   /* info tuple of tally spans */
/* The last OTel span a call started under (held) and what parent_of said of it. */
static PyObject *g_parent_span;
static uint64_t g_parent_hi, g_parent_lo, g_parent_id;
static int g_parent_unsampled;
static FrameObject *g_tally;     /* counts the calls left out directly under g_tally_anchor */
static PyObject *g_tally_anchor; /* that OTel span (held, so its identity is not reused) */

/* Ends the tally and buffers it for export (dropped, with counting, when the buffer is full). */
static int close_tally(void) {
    FrameObject *t = g_tally;
    if (t == NULL)
        return 0;
    g_tally = NULL;
    Py_CLEAR(g_tally_anchor);
    t->end = now_ns();
    int rc = 0;
    if ((t->seq1 = seq_next(t->seq)) < 0 && PyErr_Occurred())
        rc = -1;
    else
        rc = buffer_frame(g_state, (PyObject *)t, 1);
    Py_DECREF(t);
    return rc;
}

/* The tally of calls left out under OTel span ``otel`` of trace (hi, lo), span id ``parent``. Borrowed. */
static FrameObject *tally_for(PyObject *otel, uint64_t hi, uint64_t lo, uint64_t parent) {
    if (g_tally != NULL && g_tally_anchor == otel)
        return g_tally;
    if (close_tally() < 0 || g_tally_info == NULL)
        return NULL;
    FrameObject *t = PyObject_New(FrameObject, &FrameType);
    if (t == NULL)
        return NULL;
    memset((char *)t + sizeof(PyObject), 0, sizeof(FrameObject) - sizeof(PyObject));
    t->trace_hi = hi;
    t->trace_lo = lo;
    t->parent_id = parent;
    t->span_id = random64() | 1;
    t->seq = Py_NewRef(g_sequence);
    t->info = Py_NewRef(g_tally_info);
    t->kind = Py_NewRef(g_kind_call);
    t->args = PyTuple_New(0);
    t->start = now_ns();
    if (t->args == NULL || (t->seq0 = seq_next(t->seq)) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    g_tally = t;
    g_tally_anchor = Py_NewRef(otel);
    return t;
}

/* An unrecorded call below ``top`` (owned reference, as ``otel``): counted on ``carrier``. */
static PyObject *start_unrecorded(FrameObject *carrier, PyObject *top, PyObject *otel, PyObject *info,
                                  PyObject *kind) {
    FrameObject *f = NULL;
    /* ``carrier`` may be borrowed (the tally): allocating below can run Python code (finalizers of a
     * collection), other threads with it, and the capture worker may close the tally and free it */
    Py_INCREF(carrier);
    if (count_unrecorded(carrier, info) < 0 || (f = PyObject_New(FrameObject, &FrameType)) == NULL) {
        Py_DECREF(carrier);
        goto error;
    }
    memset((char *)f + sizeof(PyObject), 0, sizeof(FrameObject) - sizeof(PyObject));
    f->counting = f->foreign = 1;
    Py_INCREF(info);
    f->info = info;
    f->trace_hi = carrier->trace_hi;
    f->trace_lo = carrier->trace_lo;
    f->counted_in = (PyObject *)carrier; /* our reference */
    f->anchor = otel;
    f->outer = top;
    if (current_frame() == NULL || set_frame((PyObject *)f, needs_context(info, kind)) < 0) {
        Py_DECREF(f);
        report_failure();
        Py_INCREF(g_no_frame);
        return g_no_frame;
    }
    return (PyObject *)f;
error:
    report_failure();
    Py_DECREF(top);
    Py_DECREF(otel);
    Py_INCREF(g_no_frame);
    return g_no_frame;
}

static PyObject *start(PyObject *info, PyObject *args, PyObject *kind) {
    StateObject *state = g_state;
    PyObject *top = NULL, *otel = NULL;
    FrameObject *f = NULL;
    if ((top = current_frame()) == NULL)
        goto error;
    Py_INCREF(top);
    if ((otel = otel_current()) == NULL)
        goto error;
    if (top != Py_None && Py_TYPE(top) == &FrameType && ((FrameObject *)top)->anchor == otel) {
        FrameObject *t = (FrameObject *)top;
        if (t->skip)
            goto nothing;
        if (t->counting) /* below a call left out by adaptive sampling: counted too */
            return start_unrecorded((FrameObject *)t->counted_in, top, otel, info, kind);
        if (state->adaptive > 0 && kind == g_kind_call && !t->foreign) {
            int keep = adaptive_keep(info, state->adaptive);
            if (keep < 0)
                goto error;
            if (!keep)
                return start_unrecorded(t, top, otel, info, kind);
        }
        if ((f = PyObject_New(FrameObject, &FrameType)) == NULL)
            goto error;
        memset((char *)f + sizeof(PyObject), 0, sizeof(FrameObject) - sizeof(PyObject));
        f->trace_hi = t->trace_hi;
        f->trace_lo = t->trace_lo;
        f->parent_id = t->span_id;
        f->seq = t->seq;
        Py_INCREF(f->seq);
    } else {
        uint64_t hi = 0, lo = 0, parent = 0;
        int keep = 1, by_parent = 0;
        if (otel != Py_None) {
            if (otel != g_parent_span) { /* a span's context never changes: asked once per span */
                PyObject *p = PyObject_CallOneArg(g_parent_of, otel);
                if (p == NULL)
                    goto error;
                g_parent_hi = g_parent_lo = g_parent_id = 0;
                g_parent_unsampled = p == Py_False;
                if (p != Py_None && p != Py_False) {
                    FrameObject probe;
                    if (set_trace_id(&probe, PyTuple_GET_ITEM(p, 0)) < 0) {
                        Py_DECREF(p);
                        goto error;
                    }
                    g_parent_hi = probe.trace_hi;
                    g_parent_lo = probe.trace_lo;
                    g_parent_id = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(p, 1));
                }
                Py_DECREF(p);
                Py_INCREF(otel);
                Py_XSETREF(g_parent_span, otel);
            }
            if (g_parent_unsampled) { /* under an OTel span its sampler left out: so is all of this call */
                keep = 0;
                by_parent = 1;
            }
            hi = g_parent_hi;
            lo = g_parent_lo;
            parent = g_parent_id;
        }
        int root = (hi | lo) == 0 && !by_parent;
        if (root) {
            hi = random64();
            lo = random64();
            if ((hi | lo) == 0)
                lo = 1;
        }
        if (!root && !by_parent)
            note_trace(hi, lo);
        if (!root && !by_parent && state->adaptive > 0 && kind == g_kind_call) {
            int kept = adaptive_keep(info, state->adaptive);
            if (kept < 0)
                goto error;
            if (!kept) { /* directly under the application's span: counted on its tally */
                FrameObject *t = tally_for(otel, hi, lo, parent);
                if (t == NULL)
                    goto error;
                return start_unrecorded(t, top, otel, info, kind);
            }
        }
        if ((f = PyObject_New(FrameObject, &FrameType)) == NULL)
            goto error;
        memset((char *)f + sizeof(PyObject), 0, sizeof(FrameObject) - sizeof(PyObject));
        f->trace_hi = hi;
        f->trace_lo = lo;
        f->parent_id = parent;
        if (root && state->root_sampler != NULL && state->root_sampler != Py_None) {
            PyObject *tid = frame_get_trace_id(f, NULL);
            PyObject *r = tid ? PyObject_CallOneArg(state->root_sampler, tid) : NULL;
            Py_XDECREF(tid);
            if (r == NULL)
                goto error;
            keep = PyObject_IsTrue(r);
            Py_DECREF(r);
            if (keep < 0)
                goto error;
        } else if (root && !state->sample_all) {
            keep = lo < state->sample_cut;
        }
        if (!keep) {
            /* the root of a trace left out: current while it runs, so everything below is left out */
            f->skip = 1;
            f->foreign = 1;
            Py_INCREF(info);
            f->info = info;
            f->anchor = otel;
            f->outer = top;
            otel = top = NULL;
            state->sampled_out += !by_parent; /* traces this core left out (not the parent's) */
            if (current_frame() == NULL || set_frame((PyObject *)f, needs_context(info, kind)) < 0) {
                Py_DECREF(f);
                f = NULL;
                goto error;
            }
            return (PyObject *)f;
        }
        f->seq = g_sequence;
        Py_INCREF(f->seq);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!is_immutable(PyTuple_GET_ITEM(args, i))) { /* recorded as they are now */
            args = snapshot_args(args);
            if (args == NULL)
                goto error;
            goto have_args;
        }
    }
    Py_INCREF(args);
    /* Only immutable scalars: the tuple can never be part of a cycle. Kept here past the call, it
     * would otherwise age through the collector's generations and trigger full collections. */
    if (n)
        PyObject_GC_UnTrack(args);
have_args:
    f->args = args;
    f->anchor = otel;
    f->outer = top;
    otel = top = NULL;
    do {
        f->span_id = random64();
    } while (f->span_id == 0);
    Py_INCREF(info);
    f->info = info;
    Py_INCREF(kind);
    f->kind = kind;
    f->seq0 = seq_next(f->seq);
    f->start = now_ns();
    if (f->seq0 < 0 && PyErr_Occurred())
        goto error;
    if (current_frame() == NULL || set_frame((PyObject *)f, needs_context(info, kind)) < 0)
        goto error;
    return (PyObject *)f;
nothing:
    Py_XDECREF(top);
    Py_XDECREF(otel);
    Py_INCREF(g_no_frame);
    return g_no_frame;
error:
    report_failure();
    Py_XDECREF(top);
    Py_XDECREF(otel);
    Py_XDECREF(f);
    Py_INCREF(g_no_frame);
    return g_no_frame;
}

static PyObject *hook_enter(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 2 || !PyTuple_Check(argv[1]) || g_state == NULL || g_state->paused) {
        if (g_state != NULL)
            g_state->dropped++;
        Py_INCREF(g_no_frame);
        return g_no_frame;
    }
    PyObject *r = start(argv[0], argv[1], g_kind_call);
    if (Py_TYPE(r) == &FrameType) /* found again by the *_current hooks of the no-variable form */
        ((FrameObject *)r)->pyframe = CALLER_FRAME();
    return r;
}

static PyObject *hook_enter_module(PyObject *module, PyObject *info) {
    if (g_state == NULL || g_state->paused) {
        Py_INCREF(g_no_frame);
        return g_no_frame;
    }
    PyObject *empty = PyTuple_New(0);
    if (empty == NULL) {
        report_failure();
        Py_INCREF(g_no_frame);
        return g_no_frame;
    }
    PyObject *r = start(info, empty, g_kind_module);
    Py_DECREF(empty);
    if (Py_TYPE(r) == &FrameType)
        ((FrameObject *)r)->pyframe = CALLER_FRAME();
    return r;
}

static PyObject *hook_ret(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 2)
        Py_RETURN_NONE;
    PyObject *frame = argv[0], *value = argv[1];
    if (Py_TYPE(frame) == &FrameType && !((FrameObject *)frame)->foreign) { /* foreign: never exported */
        FrameObject *f = (FrameObject *)frame;
        PyObject *kept;
        if ((kept = snapshot(value)) == NULL) {
            report_failure();
            Py_INCREF(value);
            return value;
        }
        Py_XSETREF(f->ret, kept);
        f->has_ret = 1;
    }
    Py_INCREF(value);
    return value;
}

static PyObject *hook_leave(PyObject *module, PyObject *frame) {
    if (Py_TYPE(frame) != &FrameType)
        Py_RETURN_NONE;
    FrameObject *f = (FrameObject *)frame;
    PyObject *top = current_frame();
    if (top == NULL)
        goto error;
    int ends_top = top == frame;
    if (!ends_top && Py_TYPE(top) == &FrameType) {
        /* calls below this one whose leave() never ran (CPython raised RecursionError before the
         * hook could): this call's end ends them, or every later call of the thread would nest there */
        PyObject *p = ((FrameObject *)top)->outer;
        for (int i = 0; i < 1024 && p != NULL && Py_TYPE(p) == &FrameType && !ends_top; i++) {
            ends_top = p == frame;
            p = ((FrameObject *)p)->outer;
        }
    }
    /* the variable is set back when it holds this frame (async frames, resumed generators) */
    if (ends_top && set_frame(f->outer ? f->outer : Py_None, tl_value == frame || tl_value == top) < 0)
        goto error;
    if (f->counting)
        count_left_out_events(f);
    if (f->foreign)
        Py_RETURN_NONE;
    f->end = now_ns();
    if ((f->seq1 = seq_next(f->seq)) < 0 && PyErr_Occurred())
        goto error;
    if (g_state->adaptive > 0 && f->kind == g_kind_call && charge_events(f) < 0)
        goto error;
    PyObject *outer = f->outer;
    int root = outer == NULL || outer == Py_None;
    if (!root && Py_TYPE(outer) == &FrameType) {
        FrameObject *o = (FrameObject *)outer;
        if (o->span_id == f->parent_id)
            o->child_ns += f->end - f->start;
        root = o->foreign;
    }
    /* Finished: the caller chain and the OTel anchor are no longer needed (and a chain dropped here
     * never deepens the deallocation of buffered frames). The caller's reference keeps ``frame``. */
    Py_CLEAR(f->outer);
    Py_CLEAR(f->anchor);
    StateObject *state = g_state;
    if (buffer_frame(state, frame, root || f->child_ns > 0) < 0)
        goto error;
    if (root) {
        PyObject *hook = PyObject_CallNoArgs(g_root_end);
        if (hook == NULL)
            goto error;
        if (hook != Py_None) {
            PyObject *r = PyObject_CallNoArgs(hook);
            Py_XDECREF(r);
            if (r == NULL) {
                Py_DECREF(hook);
                goto error;
            }
        }
        Py_DECREF(hook);
    }
    Py_RETURN_NONE;
error:
    report_failure();
    Py_RETURN_NONE;
}

/* The hooks of the no-variable form (see rewriter.py): ``enter_current(info, args)``, then
 * ``ret_current(value)``, ``fail_current()`` and ``leave_current()``. The rewritten function keeps no
 * variable for its frame, so the thread keeps it: a per-thread stack of the frames these calls
 * entered, holding a reference each. The *_current hooks take the nearest entry entered by the very
 * interpreter frame calling them (the top one, unless calls above it never ran leave_current:
 * RecursionError before the hook); none when enter recorded nothing for the call (paused, a hook
 * failure), whose value, exception and end then touch no caller's frame. The stack does not depend
 * on the context: a ``Context.run`` or a core switch during the call loses nothing. */
static _Thread_local PyObject **tl_stack TLS_FAST;
static _Thread_local Py_ssize_t tl_depth TLS_FAST, tl_cap TLS_FAST;

static PyObject *hook_enter_current(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    PyObject *r = hook_enter(module, argv, argc);
    if (Py_TYPE(r) != &FrameType) {
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    if (tl_depth == tl_cap) {
        Py_ssize_t cap = tl_cap ? tl_cap * 2 : 64;
        PyObject **grown = PyMem_RawRealloc(tl_stack, (size_t)cap * sizeof(PyObject *));
        if (grown == NULL) { /* cannot keep it: the call ends here, and is still exported */
            report_failure();
            PyObject *done = hook_leave(NULL, r);
            Py_XDECREF(done);
            Py_DECREF(r);
            Py_RETURN_NONE;
        }
        tl_stack = grown;
        tl_cap = cap;
    }
    tl_stack[tl_depth++] = r; /* the stack's reference */
    Py_RETURN_NONE;
}

/* Index of the entry the calling interpreter frame entered, or -1. */
static Py_ssize_t own_entry(void) {
    void *caller = CALLER_FRAME();
    for (Py_ssize_t i = tl_depth - 1; i >= 0 && i >= tl_depth - 1024; i--)
        if (((FrameObject *)tl_stack[i])->pyframe == caller)
            return i;
    return -1;
}

static PyObject *hook_ret_current(PyObject *module, PyObject *value) {
    Py_ssize_t i = own_entry();
    if (i >= 0 && !((FrameObject *)tl_stack[i])->foreign) {
        FrameObject *f = (FrameObject *)tl_stack[i];
        Py_INCREF(f); /* snapshot() may run Python code */
        PyObject *kept = snapshot(value);
        if (kept == NULL) {
            report_failure();
        } else {
            Py_XSETREF(f->ret, kept);
            f->has_ret = 1;
        }
        Py_DECREF(f);
    }
    Py_INCREF(value);
    return value;
}

static PyObject *g_fail; /* callable(frame, exc): the core's fail hook (fast_capture.fail) */

/* fail_current(): in the ``except BaseException:`` handler, the exception being handled leaves the call */
static PyObject *hook_fail_current(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    Py_ssize_t i = own_entry();
    if (i < 0 || ((FrameObject *)tl_stack[i])->foreign || g_fail == NULL)
        Py_RETURN_NONE;
    PyObject *f = Py_NewRef(tl_stack[i]); /* fail() runs Python code */
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *exc = PyErr_GetHandledException();
#else
    PyObject *type = NULL, *exc = NULL, *tb = NULL;
    PyErr_GetExcInfo(&type, &exc, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
#endif
    if (exc != NULL && exc != Py_None) {
        PyObject *r = PyObject_CallFunctionObjArgs(g_fail, f, exc, NULL);
        if (r == NULL)
            report_failure();
        Py_XDECREF(r);
    }
    Py_XDECREF(exc);
    Py_DECREF(f);
    Py_RETURN_NONE;
}

static PyObject *hook_leave_current(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    Py_ssize_t i = own_entry();
    if (i < 0)
        Py_RETURN_NONE;
    /* entries above it: calls whose leave_current never ran (leave() below ends them as current);
     * popped one at a time, so code run by a release pushes and pops above a consistent stack */
    while (tl_depth > i + 1) {
        PyObject *stale = tl_stack[--tl_depth];
        Py_DECREF(stale);
    }
    PyObject *f = tl_stack[i]; /* the stack's reference, now ours */
    tl_depth = i;
    PyObject *r = hook_leave(NULL, f);
    Py_XDECREF(r);
    Py_DECREF(f);
    Py_RETURN_NONE;
}

/* suspend(frame, value[, node_id]) -> value: a generator is about to yield; its consumer's frame
 * becomes current again. resumed(frame, value[, node_id]) -> value: it resumed under whatever is
 * current now. In the thread's cache only, unless the variable holds the frame (see above). */
static int record_event(FrameObject *f, PyObject *kind, PyObject *node_id, PyObject *a, PyObject *b);

static int generator_event(FrameObject *f, PyObject *kind, PyObject *const *argv, Py_ssize_t argc) {
    if (argc < 3 || argv[2] == Py_None || f->foreign)
        return 0;
    if (g_state != NULL && f->seq != NULL) /* in C, as the statement-level events below */
        return record_event(f, kind, argv[2], Py_None, Py_None);
    PyObject *r = PyObject_CallFunctionObjArgs(g_event, (PyObject *)f, kind, argv[2], NULL);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static PyObject *hook_suspend(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc < 2 || argc > 3)
        Py_RETURN_NONE;
    if (Py_TYPE(argv[0]) == &FrameType && g_current != NULL) {
        FrameObject *f = (FrameObject *)argv[0];
        PyObject *top = current_frame();
        if (top == NULL || (top == argv[0] && set_frame(f->outer ? f->outer : Py_None, tl_value == argv[0]) < 0) ||
            generator_event(f, g_ev_yield, argv, argc) < 0)
            report_failure();
    }
    Py_INCREF(argv[1]);
    return argv[1];
}

static PyObject *hook_resumed(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc < 2 || argc > 3)
        Py_RETURN_NONE;
    if (Py_TYPE(argv[0]) == &FrameType && g_current != NULL) {
        FrameObject *f = (FrameObject *)argv[0];
        PyObject *top = current_frame();
        int async = f->info != NULL && PyTuple_Check(f->info) && needs_context(f->info, f->kind);
        if (top == NULL)
            report_failure();
        else {
            Py_INCREF(top);
            Py_XSETREF(f->outer, top);
            if (set_frame(argv[0], async) < 0 || generator_event(f, g_ev_resume, argv, argc) < 0)
                report_failure();
        }
    }
    Py_INCREF(argv[1]);
    return argv[1];
}

/* ---------------------------------------------------------------- statement-level events
 * line / branch / arm / assign / value: fast_capture's hooks of the same names, for frames of this
 * core: an event (kind, node_id, time_ns, seq, a, b) appended to the recorded call's list, within
 * the same budgets as fast_capture._event (events buffered, the per-second rate, a pause, at most
 * max_per_frame per call: beyond them the event is counted on its call, not kept). */
static PyObject *g_ev_line, *g_ev_branch, *g_ev_assign; /* fast_capture.EV_* */
static Py_ssize_t g_max_frame_events = 65536;            /* fast_capture.MAX_EVENTS_PER_FRAME */

static int record_event(FrameObject *f, PyObject *kind, PyObject *node_id, PyObject *a, PyObject *b) {
    StateObject *state = g_state;
    int64_t ts = 0;
    if (state->rate) { /* the clock is read here only when a budget is set; else when the event is kept */
        ts = now_ns();
        if (ts - state->rate_window >= 1000000000LL) {
            state->rate_window = ts;
            state->rate_used = 0;
        }
        state->rate_used++;
    }
    PyObject *events = f->events;
    int have = events != NULL && events != Py_None;
    if (have && !PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "frame events is not a list");
        return -1;
    }
    if (state->events >= state->max_events || state->paused || (state->rate && state->rate_used > state->rate) ||
        (have && PyList_GET_SIZE(events) >= g_max_frame_events)) {
        f->dropped_events++;
        return seq_next(f->seq) < 0 && PyErr_Occurred() ? -1 : 0;
    }
    if (!have) {
        if ((events = PyList_New(0)) == NULL)
            return -1;
        Py_XSETREF(f->events, events);
    }
    long long seq = seq_next(f->seq);
    if (seq < 0 && PyErr_Occurred())
        return -1;
    PyObject *t = PyTuple_New(6), *tso = NULL, *seqo = NULL;
    if (t == NULL || (tso = PyLong_FromLongLong(ts ? ts : now_ns())) == NULL ||
        (seqo = PyLong_FromLongLong(seq)) == NULL) {
        Py_XDECREF(t);
        Py_XDECREF(tso);
        return -1;
    }
    PyTuple_SET_ITEM(t, 0, Py_NewRef(kind));
    PyTuple_SET_ITEM(t, 1, Py_NewRef(node_id));
    PyTuple_SET_ITEM(t, 2, tso);
    PyTuple_SET_ITEM(t, 3, seqo);
    PyTuple_SET_ITEM(t, 4, Py_NewRef(a));
    PyTuple_SET_ITEM(t, 5, Py_NewRef(b));
    if (!may_be_tracked(node_id) && !may_be_tracked(a) && !may_be_tracked(b))
        PyObject_GC_UnTrack(t); /* as CPython's own tuple untracking, at once: millions of events
                                 * buffered until encoded otherwise make every collection walk them */
    int rc = PyList_Append(events, t);
    Py_DECREF(t);
    if (rc == 0)
        state->events++;
    return rc;
}

/* The recorded frame argv[0] names, or NULL (nothing recorded: NO_FRAME, a foreign or left-out call).
 * A ``statement`` event (line, assignment) of a call left out by adaptive sampling is counted on it. */
static inline FrameObject *event_frame(PyObject *const *argv, int statement) {
    if (Py_TYPE(argv[0]) != &FrameType || g_state == NULL || g_ev_line == NULL)
        return NULL;
    FrameObject *f = (FrameObject *)argv[0];
    if (f->foreign) {
        if (statement && f->counting)
            f->counted_events++;
        return NULL;
    }
    return f->seq == NULL ? NULL : f;
}

static PyObject *hook_line(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    FrameObject *f;
    if (argc == 3 && (f = event_frame(argv, 1)) != NULL && record_event(f, g_ev_line, argv[1], argv[2], Py_None) < 0)
        report_failure();
    Py_RETURN_NONE;
}

static PyObject *hook_branch(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    FrameObject *f;
    if (argc == 2 && (f = event_frame(argv, 0)) != NULL && record_event(f, g_ev_branch, argv[1], Py_None, Py_None) < 0)
        report_failure();
    Py_RETURN_NONE;
}

static PyObject *hook_arm(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 3)
        Py_RETURN_NONE;
    FrameObject *f = event_frame(argv, 0);
    if (f != NULL && record_event(f, g_ev_branch, argv[1], Py_None, Py_None) < 0)
        report_failure();
    return Py_NewRef(argv[2]);
}

static void assign_event(PyObject *const *argv) {
    FrameObject *f = event_frame(argv, 1);
    if (f == NULL)
        return;
    Py_INCREF(f); /* snapshot() may run Python code */
    PyObject *kept = snapshot(argv[3]);
    if (kept == NULL || record_event(f, g_ev_assign, argv[1], argv[2], kept) < 0)
        report_failure();
    Py_XDECREF(kept);
    Py_DECREF(f);
}

static PyObject *hook_assign(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc == 4)
        assign_event(argv);
    Py_RETURN_NONE;
}

static PyObject *hook_value(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 4)
        Py_RETURN_NONE;
    assign_event(argv);
    return Py_NewRef(argv[3]);
}

/* configure_events(line, branch, assign, max_per_frame): fast_capture's event kinds and per-call bound. */
static PyObject *configure_events(PyObject *module, PyObject *args) {
    PyObject *line, *branch, *assign;
    Py_ssize_t max_per_frame;
    if (!PyArg_ParseTuple(args, "OOOn", &line, &branch, &assign, &max_per_frame))
        return NULL;
    Py_INCREF(line);
    Py_INCREF(branch);
    Py_INCREF(assign);
    Py_XSETREF(g_ev_line, line);
    Py_XSETREF(g_ev_branch, branch);
    Py_XSETREF(g_ev_assign, assign);
    g_max_frame_events = max_per_frame;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- OTLP encoding */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    char *d = PyMem_Realloc(b->data, cap);
    if (d == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

static inline int varint_len(uint64_t v) {
    int n = 1;
    while (v > 0x7F) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline void put_varint(Buf *b, uint64_t v) { /* space reserved by the caller */
    while (v > 0x7F) {
        b->data[b->len++] = (char)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (char)v;
}

static inline void put_raw(Buf *b, const void *p, Py_ssize_t n) {
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline void put_fixed64(Buf *b, uint64_t v) {
    for (int i = 0; i < 8; i++)
        b->data[b->len++] = (char)(v >> (8 * i));
}

static inline void put_be64(Buf *b, uint64_t v) {
    for (int i = 7; i >= 0; i--)
        b->data[b->len++] = (char)(v >> (8 * i));
}

/* A KeyValue field with ``tag`` (Span.attributes 0x4a, Event.attributes 0x1a); ``key`` already
 * encoded as KeyValue.key (field 1). */
static int put_tagged_str(Buf *b, char tag, const char *key, Py_ssize_t klen, const char *val, Py_ssize_t vlen) {
    Py_ssize_t s = 1 + varint_len(vlen) + vlen;         /* AnyValue.string_value */
    Py_ssize_t kv = klen + 1 + varint_len(s) + s;      /* KeyValue */
    if (buf_reserve(b, 1 + varint_len(kv) + kv) < 0)
        return -1;
    b->data[b->len++] = tag;
    put_varint(b, kv);
    put_raw(b, key, klen);
    b->data[b->len++] = 0x12;
    put_varint(b, s);
    b->data[b->len++] = 0x0a;
    put_varint(b, vlen);
    put_raw(b, val, vlen);
    return 0;
}

static int put_tagged_int(Buf *b, char tag, const char *key, Py_ssize_t klen, long long v) {
    Py_ssize_t s = 1 + varint_len((uint64_t)v);
    Py_ssize_t kv = klen + 1 + varint_len(s) + s;
    if (buf_reserve(b, 1 + varint_len(kv) + kv) < 0)
        return -1;
    b->data[b->len++] = tag;
    put_varint(b, kv);
    put_raw(b, key, klen);
    b->data[b->len++] = 0x12;
    put_varint(b, s);
    b->data[b->len++] = 0x18;
    put_varint(b, (uint64_t)v);
    return 0;
}

static inline int put_kv_str(Buf *b, const char *key, Py_ssize_t klen, const char *val, Py_ssize_t vlen) {
    return put_tagged_str(b, 0x4a, key, klen, val, vlen);
}

static inline int put_kv_int(Buf *b, const char *key, Py_ssize_t klen, long long v) {
    return put_tagged_int(b, 0x4a, key, klen, v);
}

#define KEY(name, text) static const char name[] = text
/* field 1 (0x0a), length, text */
KEY(K_SEQ, "\x0a\x0d" "execscope.seq");
KEY(K_SEQ_END, "\x0a\x11" "execscope.seq.end");
KEY(K_RETURN, "\x0a\x16" "execscope.return.value");
KEY(K_EXIT, "\x0a\x0e" "execscope.exit");
KEY(K_CHILD, "\x0a\x12" "execscope.child_ns");
KEY(K_DROPPED, "\x0a\x18" "execscope.dropped_events");
KEY(K_NODE, "\x0a\x11" "execscope.node_id");
KEY(K_LINE, "\x0a\x10" "code.line.number");
KEY(K_VAR_NAME, "\x0a\x12" "execscope.var.name");
KEY(K_VAR_VALUE, "\x0a\x13" "execscope.var.value");
KEY(K_HLC, "\x0a\x14" "execscope.hlc.offset");
KEY(K_HLC_END, "\x0a\x18" "execscope.hlc.end_offset");
KEY(K_EXC_TYPE, "\x0a\x0e" "exception.type");
KEY(K_EXC_MESSAGE, "\x0a\x11" "exception.message");
KEY(K_EXC_STACK, "\x0a\x14" "exception.stacktrace");
KEY(K_EXC_ESCAPED, "\x0a\x11" "exception.escaped");

/* The hybrid logical clock's floor steps (clocks.steps(): two lists, sequence numbers and floors, kept
 * sorted and mutated in place by Python under the GIL), set by set_clock; NULL: no offsets. */
static PyObject *g_clock_seqs, *g_clock_floors;

/* The floor in force at sequence number ``seq`` (0 before the first step; -1 with an error set). */
static long long clock_floor(long long seq) {
    Py_ssize_t n = PyList_GET_SIZE(g_clock_seqs), lo = 0, hi = n;
    if (PyList_GET_SIZE(g_clock_floors) < n)
        n = hi = PyList_GET_SIZE(g_clock_floors);
    while (lo < hi) { /* first step after seq */
        Py_ssize_t mid = (lo + hi) / 2;
        long long v = PyLong_AsLongLong(PyList_GET_ITEM(g_clock_seqs, mid));
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (v <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? 0 : PyLong_AsLongLong(PyList_GET_ITEM(g_clock_floors, lo - 1));
}

/* clocks.offset: l - ts of an event at ``ts`` with sequence number ``seq`` (-1 with an error set). */
static long long clock_offset(long long seq, long long ts) {
    long long floor = clock_floor(seq);
    if (floor == -1 && PyErr_Occurred())
        return -1;
    return floor > ts ? floor - ts : 0;
}
#define KLEN(k) ((Py_ssize_t)sizeof(k) - 1)

static Py_ssize_t format_int(char *out, long long v) { /* decimal, as repr(int) */
    char digits[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    Py_ssize_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = digits[--n];
    return len;
}

/* A value as values.capture renders it: in C for the common immutable types, else through the
 * Python renderer. Sets text and len (valid while hold lives); returns -1 on error. */
static int render_value(PyObject *render, PyObject *name, int secret, PyObject *value, PyObject **hold, char *scratch,
                        const char **text, Py_ssize_t *len) {
    static const char redacted[] = "<redacted>";
    PyTypeObject *t = Py_TYPE(value);
    *hold = NULL;
    if (secret) {
        *text = redacted;
        *len = sizeof(redacted) - 1;
        return 0;
    }
    if ((PyObject *)t == g_rendered_type) {
        *text = PyUnicode_AsUTF8AndSize(value, len);
        if (*text != NULL)
            return 0;
        PyErr_Clear();
    } else if (t == &PyLong_Type) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow && !(v == -1 && PyErr_Occurred())) {
            *len = format_int(scratch, v);
            *text = scratch;
            /* 13 digits or more may be a card number: the renderer asks the policy */
            if (*len <= g_max_chars && (*len < 13 || !repr_patterns_on()))
                return 0;
        }
        PyErr_Clear();
    } else if (value == Py_None) {
        *text = "None";
        *len = 4;
        if (*len <= g_max_chars)
            return 0;
    } else if (t == &PyBool_Type) {
        *text = value == Py_True ? "True" : "False";
        *len = value == Py_True ? 4 : 5;
        if (*len <= g_max_chars)
            return 0;
    } else if ((t == &PyUnicode_Type && PyUnicode_GET_LENGTH(value) <= g_max_chars && !repr_may_hold(value)) ||
               t == &PyFloat_Type) { /* a str that may hold a secret goes to the renderer (its error, if
                                      * any, is the renderer's too) */
        PyObject *r = PyObject_Repr(value);
        if (r == NULL)
            return -1;
        if (PyUnicode_GET_LENGTH(r) <= g_max_chars && (*text = PyUnicode_AsUTF8AndSize(r, len)) != NULL) {
            *hold = r;
            return 0;
        }
        PyErr_Clear();
        Py_DECREF(r);
    }
    PyObject *r = repr_bounded(value, &g_limits);
    if (r == Py_None) {
        Py_DECREF(r);
        r = PyObject_CallFunctionObjArgs(render, name, value, NULL);
    }
    if (r == NULL)
        return -1;
    if (!PyUnicode_Check(r) || (*text = PyUnicode_AsUTF8AndSize(r, len)) == NULL) {
        Py_DECREF(r);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "render must return str");
        return -1;
    }
    *hold = r;
    return 0;
}

/* (name_field, head, arg_keys, secrets) for an info tuple, cached by identity (the cache holds the
 * info, so its id cannot be reused while cached). Borrowed reference. */
static PyObject *head_of(PyObject *head, PyObject *info, PyObject *kind) {
    PyObject *key = PyLong_FromVoidPtr(info);
    if (key == NULL)
        return NULL;
    PyObject *entry = PyDict_GetItemWithError(g_head_cache, key);
    if (entry != NULL && PyTuple_GET_ITEM(entry, 0) == info) {
        Py_DECREF(key);
        return entry;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    PyObject *parts = PyObject_CallFunctionObjArgs(head, info, kind, NULL);
    if (parts == NULL || !PyTuple_Check(parts) || PyTuple_GET_SIZE(parts) != 4) {
        Py_DECREF(key);
        Py_XDECREF(parts);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "head must return a 4-tuple");
        return NULL;
    }
    entry = PyTuple_Pack(5, info, PyTuple_GET_ITEM(parts, 0), PyTuple_GET_ITEM(parts, 1),
                         PyTuple_GET_ITEM(parts, 2), PyTuple_GET_ITEM(parts, 3));
    Py_DECREF(parts);
    if (entry == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    if (PyDict_GET_SIZE(g_head_cache) >= 65536)
        PyDict_Clear(g_head_cache);
    int rc = PyDict_SetItem(g_head_cache, key, entry);
    Py_DECREF(key);
    Py_DECREF(entry); /* the cache holds it */
    return rc < 0 ? NULL : entry;
}

/* One span (without the outer tag) into ``b``; returns 1 when the frame needs the Python encoder. */
typedef struct {
    PyObject *fallback, *head, *render, *secret, *stack; /* borrowed from encode_spans' arguments */
    PyObject *last_info, *last_entry;   /* the previous frame's head (entry held, info inside it) */
} Encoders;

static PyObject *g_secret_cache; /* {variable name: bool}, from the ``secret`` callable */

static int is_secret(Encoders *enc, PyObject *name) {
    if (g_secret_cache == NULL && (g_secret_cache = PyDict_New()) == NULL)
        return -1;
    PyObject *known = PyDict_GetItemWithError(g_secret_cache, name);
    if (known != NULL)
        return known == Py_True;
    if (PyErr_Occurred())
        return -1;
    PyObject *r = PyObject_CallOneArg(enc->secret, name);
    if (r == NULL)
        return -1;
    int secret = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (secret < 0 || (PyDict_GET_SIZE(g_secret_cache) < 65536 &&
                       PyDict_SetItem(g_secret_cache, name, secret ? Py_True : Py_False) < 0))
        return -1;
    return secret;
}

/* A length-delimited field written in place: tag, 2 bytes kept for the length, then the body;
 * end_field moves the body when its length takes another number of bytes. */
static int begin_field(Buf *b, char tag, Py_ssize_t *at) {
    if (buf_reserve(b, 3) < 0)
        return -1;
    *at = b->len;
    b->data[b->len] = tag;
    b->len += 3;
    return 0;
}

static int end_field(Buf *b, Py_ssize_t at) {
    Py_ssize_t body = at + 3, len = b->len - body, start = at + 1 + varint_len(len);
    if (start != body) {
        if (buf_reserve(b, start - body) < 0)
            return -1;
        memmove(b->data + start, b->data + body, len);
    }
    b->len = at + 1;
    put_varint(b, len);
    b->len = start + len;
    return 0;
}

static const char *const EVENT_NAMES[] = {"execscope.line", "execscope.branch", "execscope.assign",
                                          "execscope.yield", "execscope.resume"};

/* Span.events (11) from the frame's (kind, node_id, time, seq, a, b) tuples, as otlp_wire's
 * EventEncoder writes them; 1 when one of them needs the Python encoder. */
static int encode_events(Buf *b, FrameObject *f, Encoders *enc, int timed, long long off0) {
    Py_ssize_t n = PyList_GET_SIZE(f->events);
    char scratch[32];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = PyList_GET_ITEM(f->events, i);
        if (!PyTuple_Check(ev) || PyTuple_GET_SIZE(ev) != 6)
            return 1;
        long kind = PyLong_AsLong(PyTuple_GET_ITEM(ev, 0));
        PyObject *node = PyTuple_GET_ITEM(ev, 1), *a = PyTuple_GET_ITEM(ev, 4);
        long long ts = PyLong_AsLongLong(PyTuple_GET_ITEM(ev, 2)), seq = PyLong_AsLongLong(PyTuple_GET_ITEM(ev, 3));
        if (PyErr_Occurred() || kind < 0 || kind > 4 || !PyUnicode_Check(node) || (kind == 0 && !PyLong_Check(a)) ||
            (kind == 2 && !PyUnicode_Check(a))) {
            PyErr_Clear();
            return 1;
        }
        Py_ssize_t node_len, at;
        const char *node_text = PyUnicode_AsUTF8AndSize(node, &node_len);
        const char *name = EVENT_NAMES[kind];
        Py_ssize_t name_len = (Py_ssize_t)strlen(name);
        if (node_text == NULL || begin_field(b, 0x5a, &at) < 0 || buf_reserve(b, 11 + name_len) < 0)
            return -1;
        b->data[b->len++] = 0x09;
        put_fixed64(b, (uint64_t)ts);
        b->data[b->len++] = 0x12;
        put_varint(b, name_len);
        put_raw(b, name, name_len);
        if (put_tagged_str(b, 0x1a, K_NODE, KLEN(K_NODE), node_text, node_len) < 0 ||
            put_tagged_int(b, 0x1a, K_SEQ, KLEN(K_SEQ), seq) < 0)
            return -1;
        if (kind == 0 && put_tagged_int(b, 0x1a, K_LINE, KLEN(K_LINE), PyLong_AsLongLong(a)) < 0)
            return -1;
        if (kind == 2) {
            Py_ssize_t var_len, value_len;
            const char *var = PyUnicode_AsUTF8AndSize(a, &var_len), *value;
            PyObject *hold;
            int secret = var ? is_secret(enc, a) : -1;
            if (secret < 0 || render_value(enc->render, a, secret, PyTuple_GET_ITEM(ev, 5), &hold, scratch, &value,
                                           &value_len) < 0)
                return -1;
            int rc = put_tagged_str(b, 0x1a, K_VAR_NAME, KLEN(K_VAR_NAME), var, var_len);
            if (rc == 0)
                rc = put_tagged_str(b, 0x1a, K_VAR_VALUE, KLEN(K_VAR_VALUE), value, value_len);
            Py_XDECREF(hold);
            if (rc < 0)
                return -1;
        }
        if (timed) { /* an offset of its own where a receive moved the clock's floor during the call */
            long long off = clock_offset(seq, ts);
            if (off == -1 && PyErr_Occurred())
                return -1;
            if (off != off0 && put_tagged_int(b, 0x1a, K_HLC, KLEN(K_HLC), off) < 0)
                return -1;
        }
        if (end_field(b, at) < 0)
            return -1;
    }
    return 0;
}

/* The ``exception`` event of an exception that left the call (fast_capture._fail's ``error`` tuple:
 * type name, message, traceback entries, line, time, sequence number), as otlp_encode.encode_frame
 * writes it, its stacktrace from ``stack(entries, type_name, message)`` (runtime.format_stack);
 * ``*status`` gets the span's status message (``f"{type}: {message}"[:1024]``), written last by the
 * caller. 1 when the frame needs the Python encoder (a value of another type, text UTF-8 cannot
 * hold: Python writes surrogates as they are). */
static int encode_error(Buf *b, FrameObject *f, Encoders *enc, int timed, long long off0, PyObject **status) {
    PyObject *e = f->error;
    if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 6 || !PyUnicode_Check(PyTuple_GET_ITEM(e, 0)) ||
        !PyUnicode_Check(PyTuple_GET_ITEM(e, 1)) || !PyTuple_Check(PyTuple_GET_ITEM(e, 2)) ||
        !PyUnicode_Check(PyTuple_GET_ITEM(f->info, 0)))
        return 1;
    PyObject *type_name = PyTuple_GET_ITEM(e, 0), *message = PyTuple_GET_ITEM(e, 1);
    long long line = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 3)), ts = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 4));
    long long seq = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 5));
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 1;
    }
    PyObject *stack = PyObject_CallFunctionObjArgs(enc->stack, PyTuple_GET_ITEM(e, 2), type_name, message, NULL);
    if (stack == NULL)
        return -1;
    PyObject *full = PyUnicode_FromFormat("%U: %U", type_name, message);
    PyObject *cut = full ? PyUnicode_Substring(full, 0, 1024) : NULL;
    Py_XDECREF(full);
    if (cut == NULL) {
        Py_DECREF(stack);
        return -1;
    }
    int rc = 1;
    Py_ssize_t tlen, mlen, slen, nlen, at;
    const char *ttext, *mtext, *stext = NULL, *ntext = NULL;
    if (!PyUnicode_Check(stack) || (ttext = PyUnicode_AsUTF8AndSize(type_name, &tlen)) == NULL ||
        (mtext = PyUnicode_AsUTF8AndSize(message, &mlen)) == NULL ||
        (stext = PyUnicode_AsUTF8AndSize(stack, &slen)) == NULL ||
        (ntext = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(f->info, 0), &nlen)) == NULL ||
        PyUnicode_AsUTF8AndSize(cut, NULL) == NULL) {
        PyErr_Clear();
        goto done;
    }
    rc = -1;
    if (begin_field(b, 0x5a, &at) < 0 || buf_reserve(b, 20) < 0)
        goto done;
    b->data[b->len++] = 0x09;
    put_fixed64(b, (uint64_t)ts);
    b->data[b->len++] = 0x12;
    b->data[b->len++] = 9;
    put_raw(b, "exception", 9);
    if (put_tagged_str(b, 0x1a, K_EXC_TYPE, KLEN(K_EXC_TYPE), ttext, tlen) < 0 ||
        put_tagged_str(b, 0x1a, K_EXC_MESSAGE, KLEN(K_EXC_MESSAGE), mtext, mlen) < 0 ||
        put_tagged_str(b, 0x1a, K_EXC_STACK, KLEN(K_EXC_STACK), stext, slen) < 0 ||
        buf_reserve(b, 6 + KLEN(K_EXC_ESCAPED)) < 0)
        goto done;
    b->data[b->len++] = 0x1a; /* KeyValue { key, AnyValue { bool_value = true } } */
    b->data[b->len++] = (char)(KLEN(K_EXC_ESCAPED) + 4);
    put_raw(b, K_EXC_ESCAPED, KLEN(K_EXC_ESCAPED));
    put_raw(b, "\x12\x02\x10\x01", 4);
    if (put_tagged_int(b, 0x1a, K_LINE, KLEN(K_LINE), line) < 0 || put_tagged_int(b, 0x1a, K_SEQ, KLEN(K_SEQ), seq) < 0 ||
        put_tagged_str(b, 0x1a, K_NODE, KLEN(K_NODE), ntext, nlen) < 0)
        goto done;
    if (timed) {
        long long off = clock_offset(seq, ts);
        if ((off == -1 && PyErr_Occurred()) || (off != off0 && put_tagged_int(b, 0x1a, K_HLC, KLEN(K_HLC), off) < 0))
            goto done;
    }
    if (end_field(b, at) < 0)
        goto done;
    rc = 0;
    *status = Py_NewRef(cut);
done:
    Py_DECREF(stack);
    Py_DECREF(cut);
    return rc;
}

/* ``counts`` ({node_id: n}, or NULL) as int attributes ``prefix<node_id>``: 0, -1 on error, 1 when a
 * node id is too long for the key buffer (the caller hands the frame to the Python encoder). */
static int put_counts(Buf *b, PyObject *counts, const char *prefix) {
    if (counts == NULL || !PyDict_Check(counts))
        return 0;
    Py_ssize_t plen = (Py_ssize_t)strlen(prefix), pos = 0;
    PyObject *node, *count;
    char key[512];
    while (PyDict_Next(counts, &pos, &node, &count)) {
        Py_ssize_t nlen;
        const char *text = PyUnicode_AsUTF8AndSize(node, &nlen);
        long long v = PyLong_AsLongLong(count);
        if (text == NULL || (v == -1 && PyErr_Occurred()))
            return -1;
        Py_ssize_t klen = plen + nlen;
        if (klen + 3 > (Py_ssize_t)sizeof key)
            return 1;
        Buf k = {key, 0, sizeof key};
        k.data[k.len++] = 0x0a;
        put_varint(&k, klen);
        put_raw(&k, prefix, plen);
        put_raw(&k, text, nlen);
        if (put_kv_int(b, key, k.len, v) < 0)
            return -1;
    }
    return 0;
}

static int encode_frame(Buf *b, FrameObject *f, Encoders *enc) {
    if ((f->events != NULL && f->events != Py_None && (!PyList_Check(f->events) || enc->secret == NULL)) ||
        (f->error != NULL && f->error != Py_None && enc->stack == NULL) || f->info == NULL ||
        !PyTuple_Check(f->info) || PyTuple_GET_SIZE(f->info) < 1 || f->kind == NULL || f->args == NULL ||
        !PyTuple_Check(f->args))
        return 1;
    PyObject *entry = f->info == enc->last_info ? enc->last_entry : head_of(enc->head, f->info, f->kind);
    if (entry == NULL)
        return -1;
    if (entry != enc->last_entry) { /* held: a full cache may be cleared by a later head_of */
        Py_INCREF(entry);
        Py_XSETREF(enc->last_entry, entry);
        enc->last_info = f->info;
    }
    PyObject *name_field = PyTuple_GET_ITEM(entry, 1), *head = PyTuple_GET_ITEM(entry, 2);
    PyObject *arg_keys = PyTuple_GET_ITEM(entry, 3), *secrets = PyTuple_GET_ITEM(entry, 4);
    PyObject *params = PyTuple_GET_SIZE(f->info) > 5 ? PyTuple_GET_ITEM(f->info, 5) : NULL;
    char scratch[32];
    Py_ssize_t need = 18 + 10 + 10 + PyBytes_GET_SIZE(name_field) + 2 + 18 + PyBytes_GET_SIZE(head);
    if (buf_reserve(b, need) < 0)
        return -1;
    b->data[b->len++] = 0x0a;
    b->data[b->len++] = 16;
    put_be64(b, f->trace_hi);
    put_be64(b, f->trace_lo);
    b->data[b->len++] = 0x12;
    b->data[b->len++] = 8;
    put_be64(b, f->span_id);
    if (f->parent_id) {
        b->data[b->len++] = 0x22;
        b->data[b->len++] = 8;
        put_be64(b, f->parent_id);
    }
    put_raw(b, PyBytes_AS_STRING(name_field), PyBytes_GET_SIZE(name_field));
    b->data[b->len++] = 0x30;
    b->data[b->len++] = 1; /* SPAN_KIND_INTERNAL */
    b->data[b->len++] = 0x39;
    put_fixed64(b, (uint64_t)f->start);
    b->data[b->len++] = 0x41;
    put_fixed64(b, (uint64_t)f->end);
    put_raw(b, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head));
    if (put_kv_int(b, K_SEQ, KLEN(K_SEQ), f->seq0) < 0 || put_kv_int(b, K_SEQ_END, KLEN(K_SEQ_END), f->seq1) < 0)
        return -1;
    int timed = 0; /* clocks.needs_offsets: the floor at the call's end is above its start */
    long long off0 = 0;
    if (g_clock_seqs != NULL && PyList_GET_SIZE(g_clock_seqs) > 0) {
        long long last = clock_floor(f->seq1), off1 = 0;
        if (last == -1 && PyErr_Occurred())
            return -1;
        if (last > f->start) {
            timed = 1;
            if (((off0 = clock_offset(f->seq0, f->start)) == -1 || (off1 = clock_offset(f->seq1, f->end)) == -1) &&
                PyErr_Occurred())
                return -1;
            if (off0 && put_kv_int(b, K_HLC, KLEN(K_HLC), off0) < 0)
                return -1;
            if (off1 != off0 && put_kv_int(b, K_HLC_END, KLEN(K_HLC_END), off1) < 0)
                return -1;
        }
    }
    Py_ssize_t n = PyTuple_GET_SIZE(f->args);
    if (params == NULL || !PyTuple_Check(params))
        n = 0;
    else if (PyTuple_GET_SIZE(params) < n)
        n = PyTuple_GET_SIZE(params);
    if (PyTuple_GET_SIZE(arg_keys) < n)
        n = PyTuple_GET_SIZE(arg_keys);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyTuple_GET_ITEM(arg_keys, i), *hold;
        const char *text;
        Py_ssize_t len;
        if (render_value(enc->render, PyTuple_GET_ITEM(params, i), PyTuple_GET_ITEM(secrets, i) == Py_True,
                         PyTuple_GET_ITEM(f->args, i), &hold, scratch, &text, &len) < 0)
            return -1;
        int rc = put_kv_str(b, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), text, len);
        Py_XDECREF(hold);
        if (rc < 0)
            return -1;
    }
    if (f->has_ret) {
        PyObject *hold, *empty = PyUnicode_New(0, 0);
        const char *text;
        Py_ssize_t len;
        int rc = empty ? render_value(enc->render, empty, 0, f->ret ? f->ret : Py_None, &hold, scratch, &text, &len) : -1;
        Py_XDECREF(empty);
        if (rc < 0)
            return -1;
        rc = put_kv_str(b, K_RETURN, KLEN(K_RETURN), text, len);
        Py_XDECREF(hold);
        if (rc < 0)
            return -1;
    }
    if (f->exit != NULL && f->exit != Py_None) {
        Py_ssize_t len;
        const char *text = PyUnicode_AsUTF8AndSize(f->exit, &len);
        if (text == NULL || put_kv_str(b, K_EXIT, KLEN(K_EXIT), text, len) < 0)
            return -1;
    }
    if (f->child_ns && put_kv_int(b, K_CHILD, KLEN(K_CHILD), f->child_ns) < 0)
        return -1;
    int rc_counts = put_counts(b, f->unrecorded, "execscope.unrecorded.");
    if (rc_counts == 0)
        rc_counts = put_counts(b, f->unrecorded_events, "execscope.unrecorded_events.");
    if (rc_counts != 0)
        return rc_counts;
    if (f->events != NULL && f->events != Py_None) {
        int rc = encode_events(b, f, enc, timed, off0);
        if (rc != 0)
            return rc;
    }
    PyObject *status = NULL; /* the status message of a call an exception left */
    if (f->error != NULL && f->error != Py_None) {
        int rc = encode_error(b, f, enc, timed, off0, &status);
        if (rc != 0)
            return rc;
    }
    int rc = 0;
    if (f->dropped_events) {
        if (buf_reserve(b, 11) < 0)
            rc = -1;
        else {
            b->data[b->len++] = 0x60;
            put_varint(b, (uint64_t)f->dropped_events);
            rc = put_kv_int(b, K_DROPPED, KLEN(K_DROPPED), f->dropped_events);
        }
    }
    if (rc == 0 && status != NULL) { /* Span.status (15): Status { message = 2; code = 3 (ERROR) } */
        Py_ssize_t mlen;
        const char *m = PyUnicode_AsUTF8AndSize(status, &mlen); /* checked by encode_error */
        Py_ssize_t body = (mlen ? 1 + varint_len(mlen) + mlen : 0) + 2;
        if (m == NULL || buf_reserve(b, 1 + varint_len(body) + body) < 0)
            rc = -1;
        else {
            b->data[b->len++] = 0x7a;
            put_varint(b, body);
            if (mlen) {
                b->data[b->len++] = 0x12;
                put_varint(b, mlen);
                put_raw(b, m, mlen);
            }
            b->data[b->len++] = 0x18;
            b->data[b->len++] = 2;
        }
    }
    Py_XDECREF(status);
    return rc;
}

static PyObject *set_clock(PyObject *module, PyObject *args) {
    PyObject *seqs, *floors;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &seqs, &PyList_Type, &floors))
        return NULL;
    Py_INCREF(seqs);
    Py_INCREF(floors);
    Py_XSETREF(g_clock_seqs, seqs);
    Py_XSETREF(g_clock_floors, floors);
    Py_RETURN_NONE;
}

/* encode_spans(frames, fallback, head, render[, resource, scope[, secret[, stack]]]) -> bytes: every frame as a
 * ScopeSpans.spans field (tag 2); with ``resource`` (the encoded Resource message) and ``scope`` (the
 * encoded ScopeSpans.scope field), the whole ExportTraceServiceRequest around them. Frames this
 * encoder cannot write (an event caught in its frame, an exception without ``stack``, see
 * encode_error) go through ``fallback(frame) -> bytes`` (the Python
 * encoder); ``head(info, kind)`` gives (name field, shared attributes, argument keys, secret flags)
 * of a function, cached here by the identity of ``info``; ``render(name, value) -> str`` renders a
 * value of a type this encoder does not render itself; ``secret(name) -> bool`` whether a variable's
 * value is hidden (events are written here only with it); ``stack(entries, type_name, message)`` the
 * ``exception.stacktrace`` of an exception that left a call (runtime.format_stack). */
static PyObject *encode_spans(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if ((argc != 4 && argc != 6 && argc != 7 && argc != 8) ||
        (argc >= 6 && (!PyBytes_Check(argv[4]) || !PyBytes_Check(argv[5])))) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_spans(frames, fallback, head, render[, resource, scope[, secret[, stack]]])");
        return NULL;
    }
    Encoders enc = {argv[1], argv[2], argv[3], argc >= 7 ? argv[6] : NULL, argc == 8 ? argv[7] : NULL, NULL, NULL};
    PyObject *seq = PySequence_Fast(argv[0], "frames must be a sequence");
    if (seq == NULL)
        return NULL;
    if (g_head_cache == NULL && (g_head_cache = PyDict_New()) == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    Buf out = {0};
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (buf_reserve(&out, 256 * n + 64) < 0)
        goto error;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *encoded = NULL;
        /* the span is written in place after a 2-byte length, moved if its length takes another */
        Py_ssize_t at = out.len, body;
        if (buf_reserve(&out, 3) < 0)
            goto error;
        out.data[at] = 0x12;
        out.len = body = at + 3;
        int rc = Frame_Check(item) ? encode_frame(&out, (FrameObject *)item, &enc) : 1;
        if (rc < 0)
            goto error;
        if (rc == 0) {
            Py_ssize_t len = out.len - body, start = at + 1 + varint_len(len);
            if (start != body) {
                if (buf_reserve(&out, start - body) < 0)
                    goto error;
                memmove(out.data + start, out.data + body, len);
            }
            out.len = at + 1;
            put_varint(&out, len);
            out.len = start + len;
            continue;
        }
        out.len = at;
        {
            encoded = PyObject_CallOneArg(enc.fallback, item);
            if (encoded == NULL)
                goto error;
            if (!PyBytes_Check(encoded)) {
                Py_DECREF(encoded);
                PyErr_SetString(PyExc_TypeError, "fallback must return bytes");
                goto error;
            }
        }
        const char *data = PyBytes_AS_STRING(encoded);
        Py_ssize_t len = PyBytes_GET_SIZE(encoded);
        if (buf_reserve(&out, 1 + 10 + len) < 0) {
            Py_XDECREF(encoded);
            goto error;
        }
        out.data[out.len++] = 0x12;
        put_varint(&out, len);
        put_raw(&out, data, len);
        Py_XDECREF(encoded);
    }
    Py_DECREF(seq);
    Py_XDECREF(enc.last_entry);
    PyObject *r;
    if (argc >= 6) { /* the whole ExportTraceServiceRequest, written once */
        Py_ssize_t res = PyBytes_GET_SIZE(argv[4]), scope = PyBytes_GET_SIZE(argv[5]);
        Py_ssize_t scope_spans = scope + out.len;
        Py_ssize_t resource_spans = 1 + varint_len(res) + res + 1 + varint_len(scope_spans) + scope_spans;
        r = PyBytes_FromStringAndSize(NULL, 1 + varint_len(resource_spans) + resource_spans);
        if (r != NULL) {
            Buf w = {PyBytes_AS_STRING(r), 0, PyBytes_GET_SIZE(r)};
            w.data[w.len++] = 0x0a; /* ExportTraceServiceRequest.resource_spans */
            put_varint(&w, resource_spans);
            w.data[w.len++] = 0x0a; /* ResourceSpans.resource */
            put_varint(&w, res);
            put_raw(&w, PyBytes_AS_STRING(argv[4]), res);
            w.data[w.len++] = 0x12; /* ResourceSpans.scope_spans */
            put_varint(&w, scope_spans);
            put_raw(&w, PyBytes_AS_STRING(argv[5]), scope);
            if (out.len)
                put_raw(&w, out.data, out.len);
        }
    } else {
        r = PyBytes_FromStringAndSize(out.data ? out.data : "", out.len);
    }
    PyMem_Free(out.data);
    return r;
error:
    Py_DECREF(seq);
    Py_XDECREF(enc.last_entry);
    PyMem_Free(out.data);
    return NULL;
}

/* ---------------------------------------------------------------- module */
static PyObject *configure(PyObject *module, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"state", "current", "otel_var", "span_key", "otel_current", "parent_of",
                             "snapshot", "failed", "root_end",
                             "no_frame", "sequence", "rendered_type", "max_chars", "max_items", "max_depth",
                             "event", "ev_yield", "ev_resume", "tally_info", "fail", NULL};
    PyObject *state, *current, *otel_var, *span_key, *otel_cur, *parent_of, *snap;
    PyObject *failed, *root_end, *no_frame, *sequence, *rendered, *event, *ev_yield, *ev_resume, *tally_info;
    PyObject *fail;
    Py_ssize_t max_chars, max_items, max_depth;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$O!OOOOOOOOOO!OnnnOOOO!O", kwlist, &StateType, &state,
                                     &current, &otel_var, &span_key, &otel_cur, &parent_of, &snap,
                                     &failed, &root_end, &no_frame, &SequenceType, &sequence, &rendered,
                                     &max_chars, &max_items, &max_depth, &event, &ev_yield, &ev_resume,
                                     &PyTuple_Type, &tally_info, &fail))
        return NULL;
#define SET(g, v) do { Py_XINCREF(v); Py_XSETREF(g, v); } while (0)
    SET(g_state, (StateObject *)state);
    SET(g_current, current);
    if (otel_var == Py_None) {
        Py_CLEAR(g_otel_var);
    } else {
        SET(g_otel_var, otel_var);
    }
    SET(g_span_key, span_key);
    SET(g_otel_current, otel_cur);
    SET(g_parent_of, parent_of);
    SET(g_snapshot, snap);
    SET(g_failed, failed);
    SET(g_root_end, root_end);
    SET(g_no_frame, no_frame);
    SET(g_sequence, sequence);
    SET(g_rendered_type, rendered);
    SET(g_event, event);
    SET(g_ev_yield, ev_yield);
    SET(g_ev_resume, ev_resume);
    SET(g_tally_info, tally_info);
    SET(g_fail, fail);
#undef SET
    Py_CLEAR(g_parent_span);
    g_max_chars = max_chars;
    g_limits = (ReprLimits){max_chars, max_items, max_depth};
    clear_opaque_slots(); /* texts cut at the old limits */
    if (g_head_cache != NULL)
        PyDict_Clear(g_head_cache);
    Py_RETURN_NONE;
}

/* bounded_repr(value, max_chars, max_items, max_depth) -> str | None (see _repr.h) */
static PyObject *bounded_repr(PyObject *module, PyObject *args) {
    PyObject *value;
    ReprLimits limits;
    if (!PyArg_ParseTuple(args, "Onnn", &value, &limits.max_chars, &limits.max_items, &limits.max_depth))
        return NULL;
    if (limits.max_chars < 1 || limits.max_items < 0 || limits.max_depth < 0) {
        PyErr_SetString(PyExc_ValueError, "limits must be positive");
        return NULL;
    }
    return repr_bounded(value, &limits);
}

/* set_redaction(...): the policy for the renderer (see _repr.h); the encoder's caches of secret
 * names are dropped with the previous policy. */
static PyObject *set_redaction(PyObject *module, PyObject *args, PyObject *kwds) {
    PyObject *r = repr_set_redaction(module, args, kwds);
    if (r != NULL) {
        if (g_secret_cache != NULL)
            PyDict_Clear(g_secret_cache);
        if (g_head_cache != NULL)
            PyDict_Clear(g_head_cache);
    }
    return r;
}

/* count_events(frames) -> int: the span events their encoding holds (events, and an exception) */
static PyObject *count_events(PyObject *module, PyObject *frames) {
    PyObject *seq = PySequence_Fast(frames, "frames must be a sequence");
    if (seq == NULL)
        return NULL;
    long long total = 0;
    for (Py_ssize_t i = 0, n = PySequence_Fast_GET_SIZE(seq); i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!Frame_Check(item))
            continue;
        FrameObject *f = (FrameObject *)item;
        if (f->events != NULL && PyList_Check(f->events))
            total += PyList_GET_SIZE(f->events);
        total += f->error != NULL && f->error != Py_None;
    }
    Py_DECREF(seq);
    return PyLong_FromLongLong(total);
}

static PyObject *set_gate(PyObject *module, PyObject *mode) {
    long m = PyLong_AsLong(mode);
    if (m == -1 && PyErr_Occurred())
        return NULL;
    if (m < 0 || m > 2) {
        PyErr_SetString(PyExc_ValueError, "gate mode is 0 (off), 1 (on) or 2 (sampling)");
        return NULL;
    }
    g_gate_mode = (int)m;
    g_epoch++; /* another core may have written the variable: every thread's cache is re-read */
    Py_RETURN_NONE;
}

static PyObject *reseed(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    reseed_rng();
    Py_CLEAR(g_tally); /* the parent's: exported by the parent */
    Py_CLEAR(g_tally_anchor);
    Py_CLEAR(g_parent_span);
    Py_RETURN_NONE;
}

static PyObject *py_close_tally(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    if (g_state != NULL && close_tally() < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- traceback entries
 * tb_entries(exc, caller, limit) -> (line, entries): runtime.exception_entries for the fail hook
 * (the line where ``exc`` passed through Python frame ``caller``, and the traceback entries from
 * there inwards as (file, line, function), the innermost ``limit`` kept), with the same values.
 *
 * An exception a parser raises as control flow passes through many recorded calls, and each one's
 * fail records the traceback from its own frame inwards: walked and copied in Python, that was
 * O(depth) Python steps per frame, O(depth^2) per exception. Here the walk is a pointer chase, and
 * the entries reuse the (file, line, function) tuples of the previous result wherever the chain ends
 * as that one did (innermost first): the same code object (held by the memo, so its address cannot
 * be reused while compared), instruction offset and line field. Equal by content, never by the
 * identity of a traceback or frame: none is kept (holding one would keep the program's frames and
 * their locals alive; comparing a freed one's address would match whatever reuses it). When every
 * entry matches, the previous tuple itself is returned. Runs no Python code but allocations'. */
#define TB_MEMO_MAX 64 /* runtime._STACK_LIMIT; arrays of it on the C stack: 3 KiB (a thread may have a small stack) */
typedef struct {
    PyObject *code; /* strong */
    int lasti, lineno;
} TbKey;
static TbKey g_tb_memo[TB_MEMO_MAX];
static Py_ssize_t g_tb_memo_n;
static PyObject *g_tb_memo_entries; /* the tuple made for g_tb_memo (strong) */

static PyObject *tb_entry(PyTracebackObject *tb, PyObject *code) { /* (file, line, function) */
    PyObject *line = PyObject_GetAttrString((PyObject *)tb, "tb_lineno"); /* as Python reads it */
    if (line == NULL)
        return NULL;
    PyObject *r = PyTuple_Pack(3, ((PyCodeObject *)code)->co_filename, line, ((PyCodeObject *)code)->co_name);
    Py_DECREF(line);
    if (r != NULL && !may_be_tracked(PyTuple_GET_ITEM(r, 0)) && !may_be_tracked(PyTuple_GET_ITEM(r, 2)))
        PyObject_GC_UnTrack(r); /* atoms only (kept until encoded: see untrack_rendered) */
    return r;
}

static PyObject *tb_entries(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 3 || !PyExceptionInstance_Check(argv[0]) || !PyLong_Check(argv[2])) {
        PyErr_SetString(PyExc_TypeError, "tb_entries(exc, caller, limit)");
        return NULL;
    }
    PyObject *caller = argv[1];
    Py_ssize_t limit = PyLong_AsSsize_t(argv[2]);
    if (limit < 1 || limit > TB_MEMO_MAX) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "tb_entries: limit out of range");
        return NULL;
    }
    PyObject *head = PyException_GetTraceback(argv[0]); /* new reference: the chain stays alive */
    PyTracebackObject *tb = (PyTracebackObject *)head;
    while (tb != NULL && (PyObject *)tb->tb_frame != caller)
        tb = tb->tb_next;
    if (tb == NULL) {
        Py_XDECREF(head);
        PyObject *line = PyObject_GetAttrString(caller, "f_lineno");
        if (line == NULL)
            return NULL;
        PyObject *r = Py_BuildValue("(N())", line);
        return r;
    }
    PyTracebackObject *ring[TB_MEMO_MAX]; /* the innermost ``limit`` entries, borrowed from the chain */
    Py_ssize_t total = 0;
    for (PyTracebackObject *t = tb; t != NULL; t = t->tb_next)
        ring[total++ % limit] = t;
    Py_ssize_t n = total < limit ? total : limit;
    TbKey keys[TB_MEMO_MAX];
    PyTracebackObject *tbs[TB_MEMO_MAX];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTracebackObject *t = ring[(total - n + i) % limit];
        tbs[i] = (PyTracebackObject *)Py_NewRef(t); /* held: allocating below may run finalizers */
        keys[i].code = (PyObject *)PyFrame_GetCode(t->tb_frame);
        keys[i].lasti = t->tb_lasti;
        keys[i].lineno = t->tb_lineno;
    }
    /* innermost entries matching the previous result */
    Py_ssize_t same = 0, prev_n = g_tb_memo_n;
    while (same < n && same < prev_n) {
        TbKey *a = &keys[n - 1 - same], *b = &g_tb_memo[prev_n - 1 - same];
        if (a->code != b->code || a->lasti != b->lasti || a->lineno != b->lineno)
            break;
        same++;
    }
    PyObject *prev = Py_XNewRef(g_tb_memo_entries), *entries = NULL, *result = NULL;
    PyObject *line = PyObject_GetAttrString((PyObject *)tb, "tb_lineno");
    if (line == NULL)
        goto done;
    if (same == n && n == prev_n && prev != NULL) {
        entries = Py_NewRef(prev);
    } else {
        if ((entries = PyTuple_New(n)) == NULL)
            goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item;
            if (i >= n - same) /* matched: the previous result's tuple for the same entry */
                item = Py_NewRef(PyTuple_GET_ITEM(prev, prev_n - (n - i)));
            else if ((item = tb_entry(tbs[i], keys[i].code)) == NULL)
                goto done;
            PyTuple_SET_ITEM(entries, i, item);
        }
        int atoms = 1;
        for (Py_ssize_t i = 0; i < n && atoms; i++)
            atoms = !may_be_tracked(PyTuple_GET_ITEM(entries, i));
        if (atoms && n)
            PyObject_GC_UnTrack(entries);
        /* the memo becomes this result (its old code references dropped after, from a copy) */
        TbKey old[TB_MEMO_MAX];
        memcpy(old, g_tb_memo, (size_t)g_tb_memo_n * sizeof(TbKey));
        Py_ssize_t old_n = g_tb_memo_n;
        for (Py_ssize_t i = 0; i < n; i++) {
            g_tb_memo[i] = keys[i];
            Py_INCREF(keys[i].code);
        }
        g_tb_memo_n = n;
        PyObject *old_entries = g_tb_memo_entries;
        g_tb_memo_entries = Py_NewRef(entries);
        for (Py_ssize_t i = 0; i < old_n; i++)
            Py_DECREF(old[i].code);
        Py_XDECREF(old_entries);
    }
    result = PyTuple_Pack(2, line, entries);
done:
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(keys[i].code);
        Py_DECREF(tbs[i]);
    }
    Py_XDECREF(line);
    Py_XDECREF(entries);
    Py_XDECREF(prev);
    Py_DECREF(head);
    return result;
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "Bind the hooks to the Python side (see fast_capture._configure_native)."},
    {"enter", (PyCFunction)(void (*)(void))hook_enter, METH_FASTCALL, "enter(info, args) -> frame"},
    {"enter_module", (PyCFunction)hook_enter_module, METH_O, "enter_module(info) -> frame"},
    {"ret", (PyCFunction)(void (*)(void))hook_ret, METH_FASTCALL, "ret(frame, value) -> value"},
    {"enter_current", (PyCFunction)(void (*)(void))hook_enter_current, METH_FASTCALL,
     "enter_current(info, args) -> None: enter, the frame kept by the thread (no-variable form)"},
    {"ret_current", (PyCFunction)hook_ret_current, METH_O, "ret_current(value) -> value (no-variable form)"},
    {"fail_current", (PyCFunction)hook_fail_current, METH_NOARGS, "fail_current() (no-variable form)"},
    {"leave_current", (PyCFunction)hook_leave_current, METH_NOARGS, "leave_current() (no-variable form)"},
    {"leave", (PyCFunction)hook_leave, METH_O, "leave(frame)"},
    {"suspend", (PyCFunction)(void (*)(void))hook_suspend, METH_FASTCALL, "suspend(frame, value[, node_id]) -> value"},
    {"line", (PyCFunction)(void (*)(void))hook_line, METH_FASTCALL, "line(frame, node_id, lineno)"},
    {"branch", (PyCFunction)(void (*)(void))hook_branch, METH_FASTCALL, "branch(frame, node_id)"},
    {"arm", (PyCFunction)(void (*)(void))hook_arm, METH_FASTCALL, "arm(frame, node_id, value) -> value"},
    {"assign", (PyCFunction)(void (*)(void))hook_assign, METH_FASTCALL, "assign(frame, node_id, name, value)"},
    {"value", (PyCFunction)(void (*)(void))hook_value, METH_FASTCALL, "value(frame, node_id, name, value) -> value"},
    {"configure_events", (PyCFunction)configure_events, METH_VARARGS,
     "configure_events(line, branch, assign, max_per_frame): the event kinds and per-call bound (fast_capture)"},
    {"resumed", (PyCFunction)(void (*)(void))hook_resumed, METH_FASTCALL, "resumed(frame, value[, node_id]) -> value"},
    {"set_clock", (PyCFunction)set_clock, METH_VARARGS,
     "set_clock(seqs, floors): the clock's floor steps (two lists, clocks.steps()) the encoder reads"},
    {"encode_spans", (PyCFunction)(void (*)(void))encode_spans, METH_FASTCALL,
     "encode_spans(frames, fallback, head, render[, resource, scope[, secret[, stack]]]) -> bytes (see there)"},
    {"bounded_repr", (PyCFunction)bounded_repr, METH_VARARGS,
     "bounded_repr(value, max_chars, max_items, max_depth) -> values.safe_repr's text, or None when the "
     "value holds a type only the Python renderer handles."},
    {"set_redaction", (PyCFunction)(void (*)(void))set_redaction, METH_VARARGS | METH_KEYWORDS,
     "set_redaction(name_check, redact_text, redact_bytes, enabled, triggers, needs, card, b64run, always, "
     "min_len, slack): the secrets policy of the renderer (redaction.Policy)."},
    {"set_opaque_names", (PyCFunction)repr_set_opaque_names, METH_O,
     "set_opaque_names(names) -> None: {type: name} of classes whose instances render opaque (values)."},
    {"may_hold_secret", (PyCFunction)repr_may_hold_secret, METH_O,
     "may_hold_secret(text) -> bool: whether the policy's scan finds a trigger in a str or bytes."},
    {"reseed", (PyCFunction)reseed, METH_NOARGS, "New random ids, and no tally of the parent's (after fork)."},
    {"close_tally", (PyCFunction)py_close_tally, METH_NOARGS,
     "End the tally of calls left out under an OTel span and buffer it (before the buffer is taken)."},
    {"count_events", (PyCFunction)count_events, METH_O, "count_events(frames) -> span events they encode to"},
    {"tb_entries", (PyCFunction)(void (*)(void))tb_entries, METH_FASTCALL,
     "tb_entries(exc, caller, limit) -> (line, entries): runtime.exception_entries (see there)"},
    {"set_gate", (PyCFunction)set_gate, METH_O, "GATE's mode: 0 false, 1 true, 2 false in sampled-out traces."},
    {"current", (PyCFunction)py_current, METH_NOARGS, "The current frame of this thread and context."},
    {"set_current", (PyCFunction)py_set_current, METH_O, "Make a frame current (sets runtime._current)."},
    {"sync_current", (PyCFunction)py_sync_current, METH_NOARGS,
     "Write the cached current frame into runtime._current (before a context is copied)."},
    {NULL},
};

static struct PyModuleDef capture_module = {
    PyModuleDef_HEAD_INIT, "_capture", "Native accelerator of execscope's fast capture core.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__capture(void) {
    reseed_rng();
    if (repr_init() < 0)
        return NULL;
    if (PyType_Ready(&SequenceType) < 0 || PyType_Ready(&StateType) < 0 || PyType_Ready(&FrameType) < 0 ||
        PyType_Ready(&GateType) < 0)
        return NULL;
    g_kind_call = PyUnicode_InternFromString("call");
    g_kind_module = PyUnicode_InternFromString("module");
    if (g_kind_call == NULL || g_kind_module == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&capture_module);
    if (m == NULL)
        return NULL;
    PyObject *gate = PyType_GenericNew(&GateType, NULL, NULL);
    if (gate == NULL || PyModule_AddObjectRef(m, "GATE", gate) < 0 ||
        PyModule_AddObjectRef(m, "Sequence", (PyObject *)&SequenceType) < 0 ||
        PyModule_AddObjectRef(m, "State", (PyObject *)&StateType) < 0 ||
        PyModule_AddObjectRef(m, "Frame", (PyObject *)&FrameType) < 0 ||
        PyModule_AddObjectRef(m, "Gate", (PyObject *)&GateType) < 0) {
        Py_XDECREF(gate);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(gate);
    return m;
}
