/* tocsin._core._speedups: Signal.send() and Signal.send_robust() in C.
 *
 * Only the fast loops of signal.py are here: a send over a published plan
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

/* Set once by setup(): the objects of plans.py the fast path compares with. */
static PyObject *EMPTY_ROUTES = NULL; /* plans._EMPTY_ROUTES */
static PyObject *DEFAULT_KEY = NULL;  /* plans._DEFAULT */
static PyObject *MISSING = NULL;      /* plans._MISSING */
static PyTypeObject *SIGNAL_TYPE = NULL; /* signal.Signal */
static PyObject *ROUTES_SLOT = NULL;  /* Signal.__dict__["_routes"], a member descriptor */
static Py_ssize_t routes_offset = 0;  /* ... and where it stores the attribute */
static PyTypeObject *last_subclass = NULL; /* a subclass found to keep that slot (strong) */

/* Interned attribute and keyword names. */
static PyObject *str_routes = NULL;      /* "_routes" */
static PyObject *str_log_failure = NULL; /* "_log_failure" */
static PyObject *str_signal = NULL;      /* "signal" */
static PyObject *str_sender = NULL;      /* "sender" */
static PyObject *BASE_KWNAMES = NULL;    /* ("signal", "sender") */

/* ---- keyword names of the receiver calls, cached per call site ---------
 *
 * CPython passes a call site's keyword names as one constant tuple, the same
 * object at every call from that site: a small direct-mapped cache keyed by
 * its identity (holding a reference, so the address is not reused) gives
 * the receivers' keyword names tuple and where `sender` was, if it came by
 * keyword. */

#define KW_CACHE_SIZE 64

typedef struct {
    PyObject *key;          /* the caller's kwnames tuple (strong) */
    PyObject *out;          /* ("signal", "sender", *the others) (strong) */
    Py_ssize_t sender_at;   /* index of "sender" in key, or -1 */
    int has_signal;         /* "signal" in key: the slow path refuses it */
} KwEntry;

static KwEntry kw_cache[KW_CACHE_SIZE];

static int
is_name(PyObject *name, PyObject *interned)
{
    if (name == interned) {
        return 1;
    }
    /* Keyword names are str (CPython checks); not always interned. */
    return PyUnicode_Check(name) && PyUnicode_Compare(name, interned) == 0;
}

/* Return the cache entry for kwnames (a non-empty tuple), or NULL on error. */
static KwEntry *
kw_entry(PyObject *kwnames)
{
    size_t slot = (size_t)(((uintptr_t)kwnames >> 4) ^ ((uintptr_t)kwnames >> 10)) % KW_CACHE_SIZE;
    KwEntry *entry = &kw_cache[slot];
    if (entry->key == kwnames) {
        return entry;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
    Py_ssize_t sender_at = -1;
    int has_signal = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (is_name(name, str_sender)) {
            sender_at = i;
        }
        else if (is_name(name, str_signal)) {
            has_signal = 1;
        }
    }
    PyObject *out = PyTuple_New(2 + n - (sender_at >= 0 ? 1 : 0));
    if (out == NULL) {
        return NULL;
    }
    Py_INCREF(str_signal);
    PyTuple_SET_ITEM(out, 0, str_signal);
    Py_INCREF(str_sender);
    PyTuple_SET_ITEM(out, 1, str_sender);
    Py_ssize_t j = 2;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i != sender_at) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            Py_INCREF(name);
            PyTuple_SET_ITEM(out, j++, name);
        }
    }
    /* Swap the entry in before releasing the old one: releasing runs no
     * Python code (tuples of str), but keep the entry consistent anyway. */
    PyObject *old_key = entry->key;
    PyObject *old_out = entry->out;
    Py_INCREF(kwnames);
    entry->key = kwnames;
    entry->out = out;
    entry->sender_at = sender_at;
    entry->has_signal = has_signal;
    Py_XDECREF(old_key);
    Py_XDECREF(old_out);
    return entry;
}

/* ---- id(sender), cached ------------------------------------------------
 *
 * A routing table is keyed by id(sender): an int made per send. The int of
 * an address is the same whatever object lives there, so a few recent ones
 * are kept, keyed by address, and reused. */

#define ID_CACHE_SIZE 16

static struct {
    void *address;
    PyObject *id; /* PyLong of address (strong), or NULL */
} id_cache[ID_CACHE_SIZE];

static inline PyObject * /* a new reference */
id_of(PyObject *obj)
{
    size_t slot = (size_t)(((uintptr_t)obj >> 4) ^ ((uintptr_t)obj >> 9)) % ID_CACHE_SIZE;
    if (id_cache[slot].address == (void *)obj && id_cache[slot].id != NULL) {
        Py_INCREF(id_cache[slot].id);
        return id_cache[slot].id;
    }
    PyObject *key = PyLong_FromVoidPtr(obj);
    if (key == NULL) {
        return NULL;
    }
    PyObject *old = id_cache[slot].id;
    Py_INCREF(key);
    id_cache[slot].address = (void *)obj;
    id_cache[slot].id = key;
    Py_XDECREF(old); /* an int: frees nothing else */
    return key;
}

/* ---- signal._routes ------------------------------------------------------
 *
 * Signal declares `__slots__ = ("_routes",)`: the attribute sits at a fixed
 * offset in every instance of Signal and of its subclasses, unless a
 * subclass hides the slot under another `_routes` attribute (checked once
 * per subclass: the last one seen is remembered). */

static int
keeps_routes_slot(PyTypeObject *type)
{
    if (type == SIGNAL_TYPE || type == last_subclass) {
        return 1;
    }
    if (!PyType_IsSubtype(type, SIGNAL_TYPE)) {
        return 0;
    }
    PyObject *found = PyObject_GetAttr((PyObject *)type, str_routes);
    if (found == NULL) {
        PyErr_Clear();
        return 0;
    }
    int same = found == ROUTES_SLOT;
    Py_DECREF(found);
    if (same) {
        Py_INCREF(type);
        Py_XSETREF(last_subclass, type);
    }
    return same;
}

/* A new reference to signal._routes; NULL with an exception set on error. */
static inline PyObject *
routes_of(PyObject *signal)
{
    if (keeps_routes_slot(Py_TYPE(signal))) {
        PyObject *routes = *(PyObject **)((char *)signal + routes_offset);
        if (routes != NULL) {
            Py_INCREF(routes);
            return routes;
        }
    }
    return PyObject_GetAttr(signal, str_routes); /* raises as Python would */
}

/* ---- the descriptor ------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fallback; /* the pure-Python method: every case the C loop does not handle */
    PyObject *dict;     /* __wrapped__, __doc__, __name__, ... (functools.update_wrapper) */
    int robust;
} FastSend;

/* Dereference a record's `deref`: a new reference to the receiver (or the
 * instance of a weakly held bound method), Py_None if it died, NULL on error. */
static inline PyObject *
deref_call(PyObject *deref)
{
    if (PyWeakref_CheckRefExact(deref)) {
#if PY_VERSION_HEX >= 0x030D0000
        PyObject *obj;
        if (PyWeakref_GetRef(deref, &obj) < 0) {
            return NULL;
        }
        if (obj == NULL) {
            Py_RETURN_NONE;
        }
        return obj;
#else
        PyObject *obj = PyWeakref_GetObject(deref);
        Py_INCREF(obj);
        return obj;
#endif
    }
    /* Strong receivers (itertools.repeat(obj).__next__) and anything else. */
    return PyObject_CallNoArgs(deref);
}

/* send_robust: turn the exception being raised into the receiver's response,
 * logging it through signal._log_failure(receiver, exc) as the Python loop
 * does inside its `except Exception as exc:` block (so the exception is the
 * one being handled meanwhile: sys.exc_info() and implicit chaining agree). */
static PyObject *
robust_failure(PyObject *signal, PyObject *receiver)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    PyObject *old_type, *old_value, *old_tb;
    PyErr_GetExcInfo(&old_type, &old_value, &old_tb);
    Py_INCREF(type);
    Py_INCREF(value);
    Py_XINCREF(tb);
    PyErr_SetExcInfo(type, value, tb);
    PyObject *logged = PyObject_CallMethodObjArgs(signal, str_log_failure, receiver, value, NULL);
    PyErr_SetExcInfo(old_type, old_value, old_tb);
    Py_DECREF(type);
    Py_XDECREF(tb);
    if (logged == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    Py_DECREF(logged);
    return value;
}

#define SMALL_ARGS 16
#define SMALL_PAIRS 32

static PyObject *
fast_send_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastSend *fs = (FastSend *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *out_kwnames;
    Py_ssize_t sender_at;
    if (nkw == 0) {
        out_kwnames = BASE_KWNAMES;
        sender_at = -1;
    }
    else {
        KwEntry *entry = kw_entry(kwnames);
        if (entry == NULL) {
            return NULL;
        }
        if (entry->has_signal) {
            goto fallback; /* refused by the slow path */
        }
        out_kwnames = entry->out;
        sender_at = entry->sender_at;
    }
    /* args: self, [sender], then the keyword values in kwnames order. */
    PyObject *sender;
    if (nargs == 2 && sender_at < 0) {
        sender = args[1];
    }
    else if (nargs == 1 && sender_at >= 0) {
        sender = args[1 + sender_at];
    }
    else {
        goto fallback; /* no sender, no self, or too many: Python raises */
    }
    if (sender == MISSING) {
        goto fallback;
    }
    PyObject *self = args[0];
    PyObject *routes = routes_of(self);
    if (routes == NULL) {
        return NULL;
    }
    if (routes == EMPTY_ROUTES) { /* no receiver at all */
        Py_DECREF(routes);
        return PyList_New(0);
    }
    if (!PyDict_CheckExact(routes)) {
        Py_DECREF(routes);
        goto fallback;
    }
    PyObject *key = id_of(sender);
    if (key == NULL) {
        Py_DECREF(routes);
        return NULL;
    }
    PyObject *plan = PyDict_GetItemWithError(routes, key); /* borrowed */
    Py_DECREF(key);
    if (plan == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(routes);
            return NULL;
        }
        plan = PyDict_GetItemWithError(routes, DEFAULT_KEY);
        if (plan == NULL) {
            Py_DECREF(routes);
            if (PyErr_Occurred()) {
                return NULL;
            }
            goto fallback;
        }
    }
    if (!PyTuple_CheckExact(plan)) { /* a _SlowPlan */
        Py_DECREF(routes);
        goto fallback;
    }
    /* Hold the plan: a receiver may republish the routes (connect, a death). */
    Py_INCREF(plan);
    Py_DECREF(routes);
    Py_INCREF(out_kwnames); /* a receiver's own sends may evict its cache entry */

    Py_ssize_t n_named = PyTuple_GET_SIZE(out_kwnames) - 2;
    PyObject *small[SMALL_ARGS];
    PyObject **call = small;
    if (3 + n_named > SMALL_ARGS) {
        call = PyMem_Malloc((size_t)(3 + n_named) * sizeof(PyObject *));
        if (call == NULL) {
            Py_DECREF(plan);
            Py_DECREF(out_kwnames);
            return PyErr_NoMemory();
        }
    }
    /* call[0]: a bound method's instance (or scratch for the callee);
     * call[1], call[2]: signal, sender; then the named values, in order. */
    call[0] = NULL;
    call[1] = self;
    call[2] = sender;
    Py_ssize_t j = 3;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (i != sender_at) {
            call[j++] = args[nargs + i];
        }
    }

    /* The (receiver, response) pairs, collected in a C array and turned into
     * the list at the end: no list resizing, and no half-built list visible
     * to the receivers (gc.get_objects()) meanwhile. */
    Py_ssize_t count = PyTuple_GET_SIZE(plan);
    PyObject *small_pairs[SMALL_PAIRS];
    PyObject **pairs = small_pairs;
    Py_ssize_t done = 0;
    if (count > SMALL_PAIRS) {
        pairs = PyMem_Malloc((size_t)count * sizeof(PyObject *));
        if (pairs == NULL) {
            PyErr_NoMemory();
            goto error;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *record = PyTuple_GET_ITEM(plan, i);
        if (!PyTuple_CheckExact(record) || PyTuple_GET_SIZE(record) != 3) {
            PyErr_Format(PyExc_SystemError,
                         "tocsin: a routing plan holds %R, not a (deref, func, link) record", record);
            goto error;
        }
        PyObject *obj = deref_call(PyTuple_GET_ITEM(record, 0));
        if (obj == NULL) {
            goto error;
        }
        if (obj == Py_None) {
            Py_DECREF(obj);
            continue;
        }
        PyObject *func = PyTuple_GET_ITEM(record, 1);
        PyObject *receiver, *response;
        if (func == Py_None) {
            receiver = obj;
            response = PyObject_Vectorcall(receiver, call + 1, PY_VECTORCALL_ARGUMENTS_OFFSET, out_kwnames);
        }
        else { /* a weakly held bound method: MethodType(func, obj) */
            Py_INCREF(func); /* the record may go while it runs */
            receiver = PyMethod_New(func, obj);
            if (receiver == NULL) {
                Py_DECREF(func);
                Py_DECREF(obj);
                goto error;
            }
            call[0] = obj;
            response = PyObject_Vectorcall(func, call, 1, out_kwnames);
            call[0] = NULL;
            Py_DECREF(func);
            Py_DECREF(obj);
        }
        if (response == NULL) {
            if (!fs->robust || !PyErr_ExceptionMatches(PyExc_Exception)) {
                Py_DECREF(receiver);
                goto error;
            }
            response = robust_failure(self, receiver);
            if (response == NULL) {
                Py_DECREF(receiver);
                goto error;
            }
        }
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            Py_DECREF(receiver);
            Py_DECREF(response);
            goto error;
        }
        PyTuple_SET_ITEM(pair, 0, receiver);
        PyTuple_SET_ITEM(pair, 1, response);
        pairs[done++] = pair;
    }
    PyObject *responses = PyList_New(done);
    if (responses == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < done; i++) {
        PyList_SET_ITEM(responses, i, pairs[i]); /* steals */
    }
    done = 0;
    if (pairs != small_pairs) {
        PyMem_Free(pairs);
    }
    if (call != small) {
        PyMem_Free(call);
    }
    Py_DECREF(plan);
    Py_DECREF(out_kwnames);
    return responses;

error:
    for (Py_ssize_t i = 0; i < done; i++) {
        Py_DECREF(pairs[i]);
    }
    if (pairs != NULL && pairs != small_pairs) {
        PyMem_Free(pairs);
    }
    if (call != small) {
        PyMem_Free(call);
    }
    Py_DECREF(plan);
    Py_DECREF(out_kwnames);
    return NULL;

fallback:
    return PyObject_Vectorcall(fs->fallback, args, nargsf, kwnames);
}

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
    .tp_doc = "Signal.send or send_robust in C; the pure-Python method is __wrapped__.",
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
make_send(PyObject *module, PyObject *args)
{
    PyObject *fallback;
    int robust;
    if (!PyArg_ParseTuple(args, "Op:make_send", &fallback, &robust)) {
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_Format(PyExc_TypeError, "make_send() expects the pure-Python method; got %R", fallback);
        return NULL;
    }
    FastSend *fs = PyObject_GC_New(FastSend, &FastSendType);
    if (fs == NULL) {
        return NULL;
    }
    fs->vectorcall = fast_send_call;
    Py_INCREF(fallback);
    fs->fallback = fallback;
    fs->dict = NULL;
    fs->robust = robust;
    PyObject_GC_Track(fs);
    return (PyObject *)fs;
}

static PyObject *
setup(PyObject *module, PyObject *args)
{
    PyObject *signal_type, *empty_routes, *default_key, *missing;
    if (!PyArg_ParseTuple(args, "O!O!OO:setup", &PyType_Type, &signal_type, &PyDict_Type, &empty_routes,
                          &default_key, &missing)) {
        return NULL;
    }
    PyObject *slot = PyDict_GetItemWithError(((PyTypeObject *)signal_type)->tp_dict, str_routes);
    if (slot == NULL || !Py_IS_TYPE(slot, &PyMemberDescr_Type)
        || ((PyMemberDescrObject *)slot)->d_member->type != T_OBJECT_EX) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "setup() expects a class with __slots__ = ('_routes',); got %R",
                         signal_type);
        }
        return NULL;
    }
    routes_offset = ((PyMemberDescrObject *)slot)->d_member->offset;
    Py_INCREF(slot);
    Py_XSETREF(ROUTES_SLOT, slot);
    Py_INCREF(signal_type);
    Py_XSETREF(SIGNAL_TYPE, (PyTypeObject *)signal_type);
    Py_INCREF(empty_routes);
    Py_XSETREF(EMPTY_ROUTES, empty_routes);
    Py_INCREF(default_key);
    Py_XSETREF(DEFAULT_KEY, default_key);
    Py_INCREF(missing);
    Py_XSETREF(MISSING, missing);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"make_send", make_send, METH_VARARGS,
     "make_send(method, robust, /)\n--\n\nThe compiled send (or send_robust) replacing *method*."},
    {"setup", setup, METH_VARARGS,
     "setup(signal_class, empty_routes, default_key, missing, /)\n--\n\nThe objects of plans.py the fast path compares with."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tocsin._core._speedups",
    .m_doc = "Signal.send() and Signal.send_robust() in C (see speedups.py).",
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
