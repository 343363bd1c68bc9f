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

/* The name ``value`` renders under as "<name object at 0x...>" (an instance of a class learnt
 * opaque: repr_bounded's text is then a function of that name object and the address alone), or
 * NULL (an exception set only when the lookup failed). Borrowed. Runs no user code. */
PyObject *repr_opaque_name(PyObject *value);

/* set_opaque_names(names: dict) -> None: values._opaque_names, {type: name}: instances of these classes
 * (of the plain metaclass) are rendered "<name object at 0x...>" here too, as the Python renderer
 * renders them. */
PyObject *repr_set_opaque_names(PyObject *module, PyObject *names);

/* Must be called once (module init): looks up collections.deque. */
int repr_init(void);

/* Redaction (redaction.py is the policy; these are its hot-path half). While a policy is set, the
 * renderer shows the value under a secret-looking dict key, or the second item of a (secret-name,
 * value) pair, as <redacted>, and hands a str/bytes leaf (its first max_chars + slack characters)
 * or a 13+ digit int to the policy's redact callable only when the scan below finds a trigger. */

/* set_redaction(name_check, redact_text, redact_bytes, enabled, triggers, needs, card, b64run, always,
 * min_len, slack) -> None: the policy's callables and scanner data (Policy.scanner_data): a trigger
 * holding an upper-case letter is matched exactly, others case-insensitively; needs[i] ("" for
 * none): characters one of which the text must hold for trigger i to count. */
PyObject *repr_set_redaction(PyObject *module, PyObject *args, PyObject *kwds);

/* may_hold_secret(text: str | bytes) -> bool: the scan (a trigger, a card-digit run, a 40-char
 * base64 run); False while value patterns are off. */
PyObject *repr_may_hold_secret(PyObject *module, PyObject *text);

/* 1 when a str / bytes object may hold a secret (the scan), 0 when not, -1 on error. */
int repr_may_hold(PyObject *text);

/* Whether value patterns are on (a str leaf may change). */
int repr_patterns_on(void);

#endif
