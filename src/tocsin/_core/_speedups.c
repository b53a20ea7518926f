/* tocsin._core._speedups: the hot paths of Signal in C.
 *
 * Two parts. First, the fast loops of signal.py: a send over a published plan
 * (a tuple of connection records, see records.py and plans.py). Everything
 * else -- no sender, `signal=` among the named arguments, a plan that is not
 * a plain tuple (stale table, interceptors, pause, local scopes, async
 * receivers, via= policies, senders keyed by value), unusual argument shapes
 * -- calls the pure-Python method this object replaces, with the very
 * arguments it was given, before any receiver runs. So there is one set of
 * semantics: the C loop does what the Python loop does, in the same order.
 *
 * What makes it fast: the receivers are called by vectorcall with a keyword
 * names tuple ("signal", "sender", *named) built once per call site and
 * cached, so no keyword dict is built for the send nor per receiver call
 * (a receiver taking **kwargs still builds its own). A weakly held receiver
 * is dereferenced in its turn, as the Python loop does: one collected while
 * an earlier receiver runs is skipped.
 *
 * The objects replacing the methods are method descriptors (like functions:
 * `sig.send(...)` binds no method object) that carry the Python function as
 * __wrapped__, with its name and docstring, for introspection.
 *
 * Second, the inlined common paths of Signal.connect() and disconnect() (a
 * plain module-level function, every option at its default, any sender or
 * one matched by identity), as the same kind of descriptors: every other
 * call goes to the Python method with its arguments as given (see
 * fast_connect_call for the reference counts _inline.py reads there). A
 * change that runs no Python code is made without the signal's lock when
 * nobody holds it (see lock_free_section in _speedups_section.h).
 *
 * The signal's state is read from its __slots__ (see signal.py) at fixed
 * offsets.
 *
 * Built for CPython 3.10+ with the GIL; the loader (speedups.py) never
 * imports it on free-threaded builds or other interpreters.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <structmember.h> /* T_OBJECT_EX (Py_T_OBJECT_EX from 3.12) */

#ifndef Py_TPFLAGS_HAVE_VECTORCALL
#define Py_TPFLAGS_HAVE_VECTORCALL _Py_TPFLAGS_HAVE_VECTORCALL
#endif

/* The parts, in dependency order; each is included here only. */
#include "_speedups_state.h"
#include "_speedups_send.h"
#include "_speedups_section.h"
#include "_speedups_connect.h"

/* ---- the descriptor type ----------------------------------------------------- */

static PyObject *
fast_send_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static int
fast_send_traverse(FastSend *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->dict);
    return 0;
}

static int
fast_send_clear(FastSend *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->dict);
    return 0;
}

static void
fast_send_dealloc(FastSend *self)
{
    PyObject_GC_UnTrack(self);
    fast_send_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
fast_send_repr(FastSend *self)
{
    return PyUnicode_FromFormat("<compiled %R>", self->fallback);
}

static PyGetSetDef fast_send_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyTypeObject FastSendType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tocsin._core._speedups.FastSend",
    .tp_doc = "Signal.send, send_robust, connect or disconnect in C; the pure-Python method is __wrapped__.",
    .tp_basicsize = sizeof(FastSend),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_vectorcall_offset = offsetof(FastSend, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = fast_send_get,
    .tp_dictoffset = offsetof(FastSend, dict),
    .tp_getattro = PyObject_GenericGetAttr,
    .tp_setattro = PyObject_GenericSetAttr,
    .tp_traverse = (traverseproc)fast_send_traverse,
    .tp_clear = (inquiry)fast_send_clear,
    .tp_dealloc = (destructor)fast_send_dealloc,
    .tp_repr = (reprfunc)fast_send_repr,
    .tp_getset = fast_send_getset,
};

/* ---- module functions ------------------------------------------------------ */

static PyObject *
make_method(PyObject *module, PyObject *args)
{
    PyObject *fallback;
    int kind;
    if (!PyArg_ParseTuple(args, "Oi:make_method", &fallback, &kind)) {
        return NULL;
    }
    static const vectorcallfunc calls[] = {fast_send_call, fast_send_call, fast_connect_call,
                                           fast_disconnect_call};
    if (kind < K_SEND || kind > K_DISCONNECT) {
        PyErr_Format(PyExc_ValueError,
                     "make_method() expects 0 (send), 1 (send_robust), 2 (connect) or 3 (disconnect); got %d",
                     kind);
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_Format(PyExc_TypeError, "make_method() expects the pure-Python method; got %R", fallback);
        return NULL;
    }
    FastSend *fs = PyObject_GC_New(FastSend, &FastSendType);
    if (fs == NULL) {
        return NULL;
    }
    fs->vectorcall = calls[kind];
    Py_INCREF(fallback);
    fs->fallback = fallback;
    fs->dict = NULL;
    fs->kind = kind;
    PyObject_GC_Track(fs);
    return (PyObject *)fs;
}

static PyObject *
setup(PyObject *module, PyObject *args)
{
    PyObject *signal_type, *empty_routes, *default_key, *missing, *stale_table, *sender_ref, *attach,
        *detach, *hooks, *weakrefcount, *anchor_finder, *keywords_only, *no_priority, *lock_type;
    if (!PyArg_ParseTuple(args, "O!O!OOO!OOOO!OOOOO!:setup", &PyType_Type, &signal_type, &PyDict_Type,
                          &empty_routes, &default_key, &missing, &PyDict_Type, &stale_table, &sender_ref,
                          &attach, &detach, &PyModule_Type, &hooks, &weakrefcount, &anchor_finder,
                          &keywords_only, &no_priority, &PyType_Type, &lock_type)) {
        return NULL;
    }
    /* lock_type.locked, called directly if it is a plain C method taking no
     * argument (as _thread.lock's is); else no section runs without the lock. */
    PyObject *locked = PyDict_GetItemWithError(((PyTypeObject *)lock_type)->tp_dict, str_locked);
    if (locked == NULL && PyErr_Occurred()) {
        return NULL;
    }
    lock_locked = NULL;
    if (locked != NULL && Py_IS_TYPE(locked, &PyMethodDescr_Type)
        && (((PyMethodDescrObject *)locked)->d_method->ml_flags & ~METH_COEXIST) == METH_NOARGS) {
        lock_locked = ((PyMethodDescrObject *)locked)->d_method->ml_meth;
    }
    for (int i = 0; i < N_SLOTS; i++) {
        PyObject *slot = PyDict_GetItemWithError(((PyTypeObject *)signal_type)->tp_dict, slot_names[i]);
        if (slot == NULL || !Py_IS_TYPE(slot, &PyMemberDescr_Type)
            || ((PyMemberDescrObject *)slot)->d_member->type != T_OBJECT_EX) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_TypeError, "setup() expects a class with %R in __slots__; got %R",
                             slot_names[i], signal_type);
            }
            return NULL;
        }
        slot_offsets[i] = ((PyMemberDescrObject *)slot)->d_member->offset;
        Py_INCREF(slot);
        Py_XSETREF(slot_descrs[i], slot);
    }
    /* SenderRef's slots, if they are plain object slots; else getattr/setattr. */
    PyObject *const anchor_names[N_ANCHOR_SLOTS] = {str_conns, str_key};
    for (int i = 0; i < N_ANCHOR_SLOTS; i++) {
        anchor_offsets[i] = 0;
        PyObject *slot = PyType_Check(sender_ref)
                             ? PyDict_GetItemWithError(((PyTypeObject *)sender_ref)->tp_dict, anchor_names[i])
                             : NULL;
        if (slot == NULL && PyErr_Occurred()) {
            return NULL;
        }
        if (slot != NULL && Py_IS_TYPE(slot, &PyMemberDescr_Type)
            && ((PyMemberDescrObject *)slot)->d_member->type == T_OBJECT_EX) {
            anchor_offsets[i] = ((PyMemberDescrObject *)slot)->d_member->offset;
        }
    }
    Py_INCREF(signal_type);
    Py_XSETREF(SIGNAL_TYPE, (PyTypeObject *)signal_type);
    Py_CLEAR(last_subclass);
#define KEEP(var, value) do { Py_INCREF(value); Py_XSETREF(var, value); } while (0)
    KEEP(EMPTY_ROUTES, empty_routes);
    KEEP(DEFAULT_KEY, default_key);
    KEEP(MISSING, missing);
    KEEP(STALE_TABLE, stale_table);
    KEEP(SENDER_REF, sender_ref);
    KEEP(ATTACH, attach);
    KEEP(DETACH, detach);
    KEEP(HOOKS, hooks);
    KEEP(getweakrefcount, weakrefcount);
    KEEP(find_anchor, anchor_finder);
    KEEP(KEYWORDS_ONLY, keywords_only);
    KEEP(NO_PRIORITY, no_priority);
    KEEP(LOCK_TYPE, (PyTypeObject *)lock_type);
#undef KEEP
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"make_method", make_method, METH_VARARGS,
     "make_method(method, kind, /)\n--\n\nThe compiled send (kind 0), send_robust (1), connect (2) or "
     "disconnect (3) replacing *method*, the pure-Python one."},
    {"setup", setup, METH_VARARGS,
     "setup(signal_class, empty_routes, default_key, missing, stale_table, sender_ref, attach, detach, "
     "hooks, getweakrefcount, find_anchor, keywords_only, no_priority, lock_type, /)\n--\n\nThe objects of the core the compiled methods use."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tocsin._core._speedups",
    .m_doc = "The hot paths of Signal in C: send, send_robust, the common connect/disconnect (see speedups.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&FastSendType) < 0) {
        return NULL;
    }
    str_routes = PyUnicode_InternFromString("_routes");
    str_log_failure = PyUnicode_InternFromString("_log_failure");
    str_signal = PyUnicode_InternFromString("signal");
    str_sender = PyUnicode_InternFromString("sender");
    if (str_routes == NULL || str_log_failure == NULL || str_signal == NULL || str_sender == NULL) {
        return NULL;
    }
    for (int i = 0; i < N_SLOTS; i++) {
        slot_names[i] = PyUnicode_InternFromString(SLOT_NAMES[i]);
        if (slot_names[i] == NULL) {
            return NULL;
        }
    }
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(str_acquire, "acquire");
    INTERN(str_release, "release");
    INTERN(str_sweep, "_sweep");
    INTERN(str_sweep_released, "_sweep_released");
    INTERN(str_report_changes, "_report_changes");
    INTERN(str_connection_watcher, "connection_watcher");
    INTERN(str_watches, "watches");
    INTERN(str_conns, "conns");
    INTERN(str_key, "key");
    INTERN(str_lambda, "<lambda>");
    INTERN(str_locked, "locked");
    INTERN(str_receiver, "receiver");
    INTERN(str_weak, "weak");
    INTERN(str_dispatch_uid, "dispatch_uid");
    INTERN(str_priority, "priority");
    INTERN(str_via, "via");
    INTERN(str_on_error, "on_error");
#undef INTERN
    BASE_KWNAMES = PyTuple_Pack(2, str_signal, str_sender);
    if (BASE_KWNAMES == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&FastSendType);
    if (PyModule_AddObject(module, "FastSend", (PyObject *)&FastSendType) < 0) {
        Py_DECREF(&FastSendType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
