/* Bounded representations of builtin values in C: the same text as values.safe_repr, for values made
 * only of exact builtin types (see _repr.c). Part of the _capture extension. */
#ifndef EXECSCOPE_REPR_H
#define EXECSCOPE_REPR_H
#include <Python.h>

typedef struct {
    Py_ssize_t max_chars, max_items, max_depth;
} ReprLimits;

/* values.safe_repr(value) for a value made only of None, bool, int, float, complex, str, bytes,
 * bytearray, list, tuple, dict, set, frozenset and collections.deque (exact types). Returns a new
 * str, or Py_None (new reference) when the value holds anything else (the caller then renders it
 * in Python), or NULL with an exception set on a memory error. Runs no user code. */
PyObject *repr_bounded(PyObject *value, const ReprLimits *limits);

/* Must be called once (module init): looks up collections.deque. */
int repr_init(void);

#endif
