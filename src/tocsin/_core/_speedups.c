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
 * nobody holds it (see lock_free_section).
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

/* Set once by setup(): the objects of plans.py the fast path compares with. */
static PyObject *EMPTY_ROUTES = NULL; /* plans._EMPTY_ROUTES */
static PyObject *DEFAULT_KEY = NULL;  /* plans._DEFAULT */
static PyObject *MISSING = NULL;      /* plans._MISSING */
static PyTypeObject *SIGNAL_TYPE = NULL; /* signal.Signal */
static PyTypeObject *last_subclass = NULL; /* a subclass found to keep the slots (strong) */
static PyObject *STALE_TABLE = NULL;  /* plans._STALE_TABLE */
static PyObject *SENDER_REF = NULL;   /* records.SenderRef */
static PyObject *ATTACH = NULL;       /* records.attach */
static PyObject *DETACH = NULL;       /* records.detach */
static PyObject *HOOKS = NULL;        /* the hooks module: hooks.connection_watcher */

/* Interned attribute and keyword names. */
static PyObject *str_routes = NULL;      /* "_routes" */
static PyObject *str_log_failure = NULL; /* "_log_failure" */
static PyObject *str_signal = NULL;      /* "signal" */
static PyObject *str_sender = NULL;      /* "sender" */
static PyObject *BASE_KWNAMES = NULL;    /* ("signal", "sender") */
static PyObject *KEYWORDS_ONLY = NULL;   /* signal._KEYWORDS_ONLY, connect()'s placeholder */
static PyObject *NO_PRIORITY = NULL;     /* the int 0, compared by identity as connect() does */
static PyObject *str_acquire, *str_release, *str_sweep, *str_sweep_released, *str_report_changes,
    *str_connection_watcher, *str_watches, *str_conns, *str_key, *str_lambda, *str_locked;
/* connect()'s and disconnect()'s parameter names, interned */
static PyObject *str_receiver, *str_weak, *str_dispatch_uid, *str_priority, *str_via, *str_on_error;
static PyTypeObject *LOCK_TYPE = NULL; /* type(threading.Lock()) */
static PyCFunction lock_locked = NULL; /* its locked() method (METH_NOARGS), or NULL */

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

/* ---- the signal's state, in slots ----------------------------------------
 *
 * Signal declares its hot attributes in `__slots__` (see signal.py): each
 * sits at a fixed offset in every instance of Signal and of its subclasses,
 * unless a subclass hides a slot under another attribute of the same name
 * (checked once per subclass: the last one found to keep them is
 * remembered). */

enum { S_ROUTES, S_LOCK, S_RECORDS, S_DEAD, S_DEATH_CALLBACK, S_PUBLICATION_WATCHER, S_CHANGES,
       S_UNSCANNED, N_SLOTS };
static const char *const SLOT_NAMES[N_SLOTS] = {
    "_routes", "_lock", "_records", "_dead", "_death_callback", "_publication_watcher", "_changes",
    "_unscanned",
};
static PyObject *slot_names[N_SLOTS];       /* interned */
static PyObject *slot_descrs[N_SLOTS];      /* Signal.__dict__[name], member descriptors */
static Py_ssize_t slot_offsets[N_SLOTS];

static int
keeps_slots(PyTypeObject *type)
{
    if (type == SIGNAL_TYPE || type == last_subclass) {
        return 1;
    }
    if (SIGNAL_TYPE == NULL || !PyType_IsSubtype(type, SIGNAL_TYPE)) {
        return 0;
    }
    for (int i = 0; i < N_SLOTS; i++) {
        PyObject *found = PyObject_GetAttr((PyObject *)type, slot_names[i]);
        if (found == NULL) {
            PyErr_Clear();
            return 0;
        }
        int same = found == slot_descrs[i];
        Py_DECREF(found);
        if (!same) {
            return 0;
        }
    }
    Py_INCREF(type);
    Py_XSETREF(last_subclass, type);
    return 1;
}

/* The slot's value, borrowed (NULL if unset); the type must keep the slots. */
#define SLOT(obj, i) (*(PyObject **)((char *)(obj) + slot_offsets[i]))

static inline void
set_slot(PyObject *obj, int i, PyObject *value)
{
    PyObject **where = (PyObject **)((char *)obj + slot_offsets[i]);
    PyObject *old = *where;
    Py_INCREF(value);
    *where = value;
    Py_XDECREF(old); /* may run a __del__, as the attribute store in Python would */
}

/* A new reference to signal._routes; NULL with an exception set on error. */
static inline PyObject *
routes_of(PyObject *signal)
{
    if (keeps_slots(Py_TYPE(signal))) {
        PyObject *routes = SLOT(signal, S_ROUTES);
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
    int kind; /* K_SEND, K_SEND_ROBUST, K_CONNECT or K_DISCONNECT */
} FastSend;

enum { K_SEND, K_SEND_ROBUST, K_CONNECT, K_DISCONNECT };

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
        PyObject *obj = PyWeakref_GET_OBJECT(deref); /* borrowed; Py_None once dead */
        Py_INCREF(obj);
        return obj;
#endif
    }
    /* Strong receivers (itertools.repeat(obj).__next__) and anything else. */
    return PyObject_CallNoArgs(deref);
}

/* The exception being raised, taken (a new reference, normalized, with its
 * traceback set), or NULL if none. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_DECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Raise *exc* again (stolen; NULL: nothing). */
static void
restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (exc != NULL) {
        PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
    }
#endif
}

/* send_robust: turn the exception being raised into the receiver's response,
 * logging it through signal._log_failure(receiver, exc) as the Python loop
 * does inside its `except Exception as exc:` block (so the exception is the
 * one being handled meanwhile: sys.exc_info() and implicit chaining agree). */
static PyObject *
robust_failure(PyObject *signal, PyObject *receiver)
{
    PyObject *exc = take_exception();
    PyObject *old_type, *old_value, *old_tb;
    PyErr_GetExcInfo(&old_type, &old_value, &old_tb);
    PyErr_SetExcInfo(Py_NewRef((PyObject *)Py_TYPE(exc)), Py_NewRef(exc), PyException_GetTraceback(exc));
    PyObject *logged = PyObject_CallMethodObjArgs(signal, str_log_failure, receiver, exc, NULL);
    PyErr_SetExcInfo(old_type, old_value, old_tb);
    if (logged == NULL) {
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(logged);
    return exc;
}

#define SMALL_ARGS 16
#define SMALL_PAIRS 128 /* a kilobyte of stack at most */

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
    /* Held at once: any allocation below may run a garbage collection, and
     * so a weakref callback sending from another call site that evicts the
     * cache entry (a receiver's own sends may too). */
    Py_INCREF(out_kwnames);
    /* args: self, [sender], then the keyword values in kwnames order. */
    PyObject *sender;
    if (nargs == 2 && sender_at < 0) {
        sender = args[1];
    }
    else if (nargs == 1 && sender_at >= 0) {
        sender = args[1 + sender_at];
    }
    else {
        goto release_and_fallback; /* no sender, no self, or too many: Python raises */
    }
    if (sender == MISSING) {
        goto release_and_fallback;
    }
    PyObject *self = args[0];
    PyObject *routes = routes_of(self);
    if (routes == NULL) {
        Py_DECREF(out_kwnames);
        return NULL;
    }
    if (routes == EMPTY_ROUTES) { /* no receiver at all */
        Py_DECREF(routes);
        Py_DECREF(out_kwnames);
        return PyList_New(0);
    }
    if (!PyDict_CheckExact(routes)) {
        Py_DECREF(routes);
        goto release_and_fallback;
    }
    PyObject *key = id_of(sender);
    if (key == NULL) {
        Py_DECREF(routes);
        Py_DECREF(out_kwnames);
        return NULL;
    }
    PyObject *plan = PyDict_GetItemWithError(routes, key); /* borrowed */
    Py_DECREF(key);
    if (plan == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(routes);
            Py_DECREF(out_kwnames);
            return NULL;
        }
        plan = PyDict_GetItemWithError(routes, DEFAULT_KEY);
        if (plan == NULL) {
            Py_DECREF(routes);
            if (PyErr_Occurred()) {
                Py_DECREF(out_kwnames);
                return NULL;
            }
            goto release_and_fallback;
        }
    }
    if (!PyTuple_CheckExact(plan)) { /* a _SlowPlan */
        Py_DECREF(routes);
        goto release_and_fallback;
    }
    /* Hold the plan: a receiver may republish the routes (connect, a death). */
    Py_INCREF(plan);
    Py_DECREF(routes);

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
            if (fs->kind != K_SEND_ROBUST || !PyErr_ExceptionMatches(PyExc_Exception)) {
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

release_and_fallback:
    Py_DECREF(out_kwnames);
fallback:
    return PyObject_Vectorcall(fs->fallback, args, nargsf, kwnames);
}

/* ---- connect() and disconnect(): their common cases --------------------------
 *
 * What the inlined paths of Signal.connect() and Signal.disconnect() do, step
 * for step, for a plain module-level function (see signal.py) with every
 * option at its default, for any sender or a sender matched by identity.
 * The compiled methods call these first and hand the call to the Python
 * methods on NotImplemented (other receivers, weak=False, dispatch_uid=,
 * priority=, via=, on_error=, other senders).
 * The lock is the signal's own threading.Lock, taken and released through
 * its methods, and everything the Python code does under it is done here
 * in the same order: the same tools see the same events. */

#ifndef CO_NESTED
#define CO_NESTED 0x0010
#endif

static PyObject *getweakrefcount = NULL; /* weakref.getweakrefcount */
static PyObject *find_anchor = NULL;     /* records.find_anchor */

/* Whether connect()'s inlined path takes *receiver*: a plain function taking
 * **kwargs, neither async nor nested nor a lambda, with no attributes. */
static int
plain_function(PyObject *receiver)
{
    if (!PyFunction_Check(receiver)) {
        return 0;
    }
    PyCodeObject *code = (PyCodeObject *)PyFunction_GET_CODE(receiver);
    if ((code->co_flags & (CO_VARKEYWORDS | CO_COROUTINE | CO_NESTED)) != CO_VARKEYWORDS) {
        return 0;
    }
    if (code->co_name == str_lambda || PyUnicode_Compare(code->co_name, str_lambda) == 0) {
        return 0;
    }
    PyObject *attributes = ((PyFunctionObject *)receiver)->func_dict;
    return attributes == NULL || (PyDict_Check(attributes) && PyDict_GET_SIZE(attributes) == 0);
}

/* Whether the signal's slots can be used: the type keeps them and they are set. */
static int
usable_slots(PyObject *self)
{
    if (!keeps_slots(Py_TYPE(self))) {
        return 0;
    }
    for (int i = 0; i < N_SLOTS; i++) {
        if (SLOT(self, i) == NULL) {
            return 0; /* a subclass that skipped __init__: Python raises AttributeError */
        }
    }
    return PyDict_CheckExact(SLOT(self, S_RECORDS));
}

/* Call obj.name() and drop the result; -1 on error. */
static int
call_method0(PyObject *obj, PyObject *name)
{
    PyObject *result = PyObject_CallMethodNoArgs(obj, name);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Release the lock, keeping the exception being raised (if any) as Python's
 * `finally: lock.release()` would; -1 if the release itself failed. */
static int
release(PyObject *lock)
{
    PyObject *pending = take_exception();
    if (call_method0(lock, str_release) < 0) {
        if (pending != NULL) { /* the release's error wins, as in Python, with the first as context */
            PyObject *failure = take_exception();
            PyException_SetContext(failure, pending); /* steals pending */
            restore_exception(failure);
        }
        return -1;
    }
    restore_exception(pending);
    return 0;
}

/* After the lock section: `if self._dead: self._sweep_released()`, keeping
 * the exception being raised (if any); -1 on a new error. */
static int
sweep_if_dead(PyObject *self)
{
    PyObject *dead = SLOT(self, S_DEAD);
    if (dead == NULL || dead == Py_False) {
        return 0;
    }
    PyObject *pending = take_exception();
    int truth = PyObject_IsTrue(dead);
    if (truth < 0 || (truth && call_method0(self, str_sweep_released) < 0)) {
        Py_XDECREF(pending);
        return -1;
    }
    restore_exception(pending);
    return 0;
}

/* Under the lock: `watcher = hooks.connection_watcher; if watcher is not None
 * and watcher.watches(self): self._changes.append(change)`; -1 on error. */
static int
note_change(PyObject *self, PyObject *change_connected, PyObject *record, PyObject *extra)
{
    PyObject *watcher = PyObject_GetAttr(HOOKS, str_connection_watcher);
    if (watcher == NULL) {
        return -1;
    }
    if (watcher == Py_None) {
        Py_DECREF(watcher);
        return 0;
    }
    PyObject *watches = PyObject_CallMethodOneArg(watcher, str_watches, self);
    Py_DECREF(watcher);
    if (watches == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(watches);
    Py_DECREF(watches);
    if (truth <= 0) {
        return truth;
    }
    PyObject *change = PyTuple_Pack(3, change_connected, record, extra);
    if (change == NULL) {
        return -1;
    }
    PyObject *changes = SLOT(self, S_CHANGES);
    if (changes == NULL) {
        Py_DECREF(change);
        PyErr_SetString(PyExc_AttributeError, "'Signal' object has no attribute '_changes'");
        return -1;
    }
    Py_INCREF(changes);
    int appended = PyList_Check(changes) ? PyList_Append(changes, change) : -1;
    if (appended < 0 && !PyErr_Occurred()) {
        PyObject *result = PyObject_CallMethod(changes, "append", "O", change);
        appended = result == NULL ? -1 : 0;
        Py_XDECREF(result);
    }
    Py_DECREF(changes);
    Py_DECREF(change);
    return appended;
}

/* Under the lock: invalidate the routes and tell the publication watcher.
 * The old routes are handed to *old* (a new reference) for the caller to
 * drop once the section is over: dropping them runs no code of ours, but it
 * is kept out of the section all the same (see lock_free_section). */
static int
invalidate(PyObject *self, PyObject **old)
{
    PyObject **where = (PyObject **)((char *)self + slot_offsets[S_ROUTES]);
    Py_INCREF(STALE_TABLE);
    Py_XSETREF(*old, *where);
    *where = STALE_TABLE;
    PyObject *watcher = SLOT(self, S_PUBLICATION_WATCHER);
    if (watcher == NULL || watcher == Py_None) {
        return 0;
    }
    Py_INCREF(watcher);
    PyObject *result = PyObject_CallNoArgs(watcher);
    Py_DECREF(watcher);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Whether the section connect() and disconnect() run under the signal's
 * lock may run without taking it: 1 if so, 0 if the lock must be taken, -1
 * on error.
 *
 * The lock orders whole sections of Python code, which the GIL alone cannot
 * (a thread switch may fall between any two bytecodes). A section in C that
 * runs no Python code and releases no GIL from start to end cannot be
 * interleaved with any other thread's: it is atomic under the GIL. So when
 * nobody holds the lock (no Python section in progress; a thread waiting for
 * it sees the changes once it has it, as if this had taken and released it
 * first) and nothing in the section would call Python code -- no sweep due
 * (`_dead`), no publication or connection watcher, a plain threading.Lock --
 * the section runs as is. Nothing in it allocates a tracked object (which
 * could start a garbage collection, and so weakref callbacks and __del__
 * methods) nor frees anything but ints and bools: the records and the old
 * routes are released after it. This saves the acquire() and release()
 * calls, which cost about as much as the rest of the section.
 *
 * Only with the GIL (speedups.py never loads this module on free-threaded
 * builds). */
static int
lock_free_section(PyObject *self, PyObject *lock)
{
    if (lock_locked == NULL || Py_TYPE(lock) != LOCK_TYPE || SLOT(self, S_DEAD) != Py_False
        || SLOT(self, S_PUBLICATION_WATCHER) != Py_None) {
        return 0;
    }
    PyObject *watcher = PyDict_GetItemWithError(PyModule_GetDict(HOOKS), str_connection_watcher);
    if (watcher != Py_None) {
        return watcher == NULL && PyErr_Occurred() ? -1 : 0;
    }
    PyObject *held = lock_locked(lock, NULL);
    if (held == NULL) {
        return -1;
    }
    Py_DECREF(held); /* a bool */
    return held == Py_False;
}

/* After the lock: `if self._changes: self._report_changes()`; -1 on error. */
static int
report_changes(PyObject *self)
{
    PyObject *changes = SLOT(self, S_CHANGES);
    if (changes == NULL) {
        return 0;
    }
    int truth = PyList_CheckExact(changes) ? PyList_GET_SIZE(changes) > 0 : PyObject_IsTrue(changes);
    if (truth <= 0) {
        return truth;
    }
    return call_method0(self, str_report_changes);
}

/* A sender's anchor (records.SenderRef) keeps `conns` and `key` in slots:
 * read and written at their offsets when the anchor is exactly a SenderRef
 * and the slot is set, else through getattr/setattr (which raise as Python
 * would). */
enum { A_CONNS, A_KEY, N_ANCHOR_SLOTS };
static Py_ssize_t anchor_offsets[N_ANCHOR_SLOTS]; /* 0: use getattr/setattr */
#define ANCHOR_SLOT(obj, i) (*(PyObject **)((char *)(obj) + anchor_offsets[i]))

/* anchor.conns or anchor.key: a new reference, NULL on error. */
static inline PyObject *
anchor_get(PyObject *anchor, int i)
{
    if (anchor_offsets[i] && (PyObject *)Py_TYPE(anchor) == SENDER_REF) {
        PyObject *value = ANCHOR_SLOT(anchor, i);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
    }
    return PyObject_GetAttr(anchor, i == A_CONNS ? str_conns : str_key);
}

/* anchor.conns = value or anchor.key = value; -1 on error. Frees an int or
 * None at most (the keys are ints or tuples of them). */
static inline int
anchor_set(PyObject *anchor, int i, PyObject *value)
{
    if (anchor_offsets[i] && (PyObject *)Py_TYPE(anchor) == SENDER_REF) {
        PyObject *old = ANCHOR_SLOT(anchor, i);
        Py_INCREF(value);
        ANCHOR_SLOT(anchor, i) = value;
        Py_XDECREF(old);
        return 0;
    }
    return PyObject_SetAttr(anchor, i == A_CONNS ? str_conns : str_key, value);
}

/* The sender's anchor, as connect()'s inlined records.hold_sender() makes it. */
static PyObject *
anchor_for(PyObject *sender, PyObject *callback)
{
    PyObject *count = PyObject_CallOneArg(getweakrefcount, sender);
    if (count == NULL) {
        return NULL;
    }
    int some = PyObject_IsTrue(count);
    Py_DECREF(count);
    if (some < 0) {
        return NULL;
    }
    if (some) {
        PyObject *found = PyObject_CallFunctionObjArgs(find_anchor, sender, callback, NULL);
        if (found != Py_None) {
            return found; /* or NULL on error */
        }
        Py_DECREF(found);
    }
    PyObject *anchor = PyObject_CallFunctionObjArgs(SENDER_REF, sender, callback, NULL);
    if (anchor == NULL) {
        return NULL;
    }
    PyObject *key = id_of(sender);
    if (key == NULL || anchor_set(anchor, A_CONNS, Py_None) < 0
        || anchor_set(anchor, A_KEY, key) < 0) { /* key last: see records.find_anchor */
        Py_XDECREF(key);
        Py_DECREF(anchor);
        return NULL;
    }
    Py_DECREF(key);
    return anchor;
}

/* id(receiver) << 64 | id(sender): records.connection_key for two ids,
 * made as one int from its 16 bytes. */
static PyObject *
pair_key(PyObject *receiver, PyObject *sender)
{
    uint64_t halves[2] = {(uint64_t)(uintptr_t)sender, (uint64_t)(uintptr_t)receiver};
    unsigned char bytes[16];
    for (int i = 0; i < 8; i++) { /* little-endian, whatever the machine's order */
        bytes[i] = (unsigned char)(halves[0] >> (8 * i));
        bytes[8 + i] = (unsigned char)(halves[1] >> (8 * i));
    }
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromUnsignedNativeBytes(bytes, sizeof bytes,
                                          Py_ASNATIVEBYTES_LITTLE_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
#else
    return _PyLong_FromByteArray(bytes, sizeof bytes, 1, 0);
#endif
}

/* connect(signal, receiver, sender, weak, dispatch_uid, keywords_only, priority, via):
 * the compiled Signal.connect calls it first, with the arguments matched to
 * those parameters; NotImplemented means "not the common case": the Python
 * method gets the call, as if this had not been called (nothing changed). */
static PyObject *
connect_common(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "connect() takes 8 arguments");
        return NULL;
    }
    PyObject *self = args[0], *receiver = args[1], *sender = args[2];
    if (args[3] != Py_True || args[4] != Py_None || args[5] != KEYWORDS_ONLY || args[6] != NO_PRIORITY
        || args[7] != Py_None) {
        goto fallback; /* an option off its default (weak=1 included: Python decides) */
    }
    if (!plain_function(receiver) || !usable_slots(self)) {
        goto fallback;
    }
    if (sender != Py_None && Py_TYPE(sender)->tp_weaklistoffset == 0) {
        goto fallback; /* a sender held strongly or matched by value */
    }
    /* Everything is worked out before taking the lock (see signal.py). */
    PyObject *callback = SLOT(self, S_DEATH_CALLBACK);
    Py_INCREF(callback);
    PyObject *anchor = NULL, *key = NULL, *record = NULL, *ref = NULL;
    PyObject *lock = NULL, *swept = NULL, *result = NULL, *stored = NULL, *old_routes = NULL;
    int quiet = 0; /* the section runs without the lock (see lock_free_section) */
    if (sender == Py_None) {
        key = PyLong_FromVoidPtr(receiver);
        anchor = Py_None;
        Py_INCREF(anchor);
    }
    else {
        anchor = anchor_for(sender, callback);
        if (anchor == NULL) {
            goto done;
        }
        key = pair_key(receiver, sender); /* id(receiver) << 64 | anchor.key, which is id(sender) */
    }
    if (key == NULL) {
        goto done;
    }
    ref = PyWeakref_NewRef(receiver, callback);
    if (ref == NULL) {
        goto done;
    }
    record = PyTuple_Pack(3, ref, Py_None, anchor);
    if (record == NULL) {
        goto done;
    }
    lock = SLOT(self, S_LOCK); /* checked on entry; user code may have run since (a GC) */
    if (lock == NULL) {
        PyErr_SetString(PyExc_AttributeError, "'Signal' object has no attribute '_lock'");
        goto done;
    }
    Py_INCREF(lock);
    /* From here to the end of the section nothing may run Python code when
     * it runs without the lock (see lock_free_section): a sender's anchor
     * already holding connections is updated by records.attach, so then the
     * lock is taken. Reading the slot runs none. */
    quiet = lock_free_section(self, lock);
    if (quiet < 0) {
        goto done;
    }
    if (quiet && anchor != Py_None) {
        PyObject *conns = anchor_get(anchor, A_CONNS);
        if (conns == NULL) {
            goto done;
        }
        quiet = conns == Py_None;
        Py_DECREF(conns);
    }
    if (!quiet && call_method0(lock, str_acquire) < 0) {
        goto done;
    }
    /* ---- under the lock (or atomic under the GIL) */
    PyObject *dead = SLOT(self, S_DEAD);
    int truth = dead == NULL ? 0 : PyObject_IsTrue(dead);
    if (truth < 0) {
        goto unlock;
    }
    if (truth) {
        swept = PyObject_CallMethodNoArgs(self, str_sweep); /* freed after the lock is released */
        if (swept == NULL) {
            goto unlock;
        }
    }
    PyObject *records = SLOT(self, S_RECORDS); /* checked on entry; user code ran since */
    if (records == NULL || !PyDict_CheckExact(records)) {
        PyErr_SetString(PyExc_SystemError, "tocsin: Signal._records is no longer a dict");
        goto unlock;
    }
    stored = PyDict_SetDefault(records, key, record); /* borrowed */
    if (stored == NULL) {
        goto unlock;
    }
    if (stored != record) { /* a duplicate: nothing to do */
        Py_INCREF(receiver);
        result = receiver;
        goto unlock;
    }
    if (anchor != Py_None) { /* the sender's death drops this connection */
        PyObject *conns = anchor_get(anchor, A_CONNS);
        if (conns == NULL) {
            goto unlock;
        }
        int first = conns == Py_None;
        Py_DECREF(conns);
        if (first) {
            if (anchor_set(anchor, A_CONNS, key) < 0) {
                goto unlock;
            }
        }
        else {
            PyObject *attached = PyObject_CallFunctionObjArgs(ATTACH, anchor, key, NULL);
            if (attached == NULL) {
                goto unlock;
            }
            Py_DECREF(attached);
        }
    }
    if (invalidate(self, &old_routes) < 0) {
        goto unlock;
    }
    set_slot(self, S_UNSCANNED, Py_True); /* look for module copies at the next rebuild */
    if (!quiet && note_change(self, Py_True, record, receiver) < 0) {
        goto unlock;
    }
    Py_INCREF(receiver);
    result = receiver;
    /* ---- released on every path */
unlock:
    if (!quiet && release(lock) < 0) {
        Py_CLEAR(result);
    }
    if (sweep_if_dead(self) < 0) {
        Py_CLEAR(result);
    }
    if (result != NULL && stored == record && report_changes(self) < 0) {
        Py_CLEAR(result);
    }
done:
    Py_XDECREF(old_routes);
    Py_XDECREF(swept);
    Py_XDECREF(lock);
    Py_XDECREF(record);
    Py_XDECREF(ref);
    Py_XDECREF(key);
    Py_XDECREF(anchor);
    Py_DECREF(callback);
    return result;

fallback:
    Py_RETURN_NOTIMPLEMENTED;
}

/* For a lock-free disconnect: 1 if the record under *key* in *records* (a
 * dict) has no sender anchor, or one whose only connection it is (so that
 * forgetting it is a slot store, not records.detach()), or if there is no
 * such record; 0 if the lock must be taken; -1 on error. Runs no Python code. */
static int
anchor_forgets_alone(PyObject *records, PyObject *key)
{
    if (records == NULL || !PyDict_CheckExact(records)) {
        return 0; /* the section raises */
    }
    PyObject *record = PyDict_GetItemWithError(records, key); /* borrowed */
    if (record == NULL) {
        return PyErr_Occurred() ? -1 : 1;
    }
    if (!PyTuple_CheckExact(record) || PyTuple_GET_SIZE(record) != 3) {
        return 0;
    }
    PyObject *link = PyTuple_GET_ITEM(record, 2);
    if (link == Py_None) {
        return 1;
    }
    PyObject *anchor = PyTuple_CheckExact(link) ? PyTuple_GET_ITEM(link, 0) : link;
    if ((PyObject *)Py_TYPE(anchor) != SENDER_REF) {
        return 0;
    }
    PyObject *conns = anchor_get(anchor, A_CONNS);
    if (conns == NULL) {
        return -1;
    }
    /* Exact ints compare in C; anything else (a list of keys) goes to detach(). */
    int alone = conns == key
                || (PyLong_CheckExact(conns) && PyLong_CheckExact(key)
                    && PyObject_RichCompareBool(conns, key, Py_EQ) == 1);
    Py_DECREF(conns);
    return alone;
}

/* disconnect(signal, receiver, sender, dispatch_uid): the compiled
 * Signal.disconnect's common case (a function, no dispatch_uid, any sender or one matched by
 * identity), or NotImplemented. */
static PyObject *
disconnect_common(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "disconnect() takes 4 arguments");
        return NULL;
    }
    PyObject *self = args[0], *receiver = args[1], *sender = args[2];
    if (args[3] != Py_None || !PyFunction_Check(receiver) || !usable_slots(self)) {
        goto fallback;
    }
    PyObject *key;
    if (sender == Py_None) {
        key = PyLong_FromVoidPtr(receiver);
    }
    else if (Py_TYPE(sender)->tp_weaklistoffset != 0) {
        key = pair_key(receiver, sender);
    }
    else {
        goto fallback;
    }
    if (key == NULL) {
        return NULL;
    }
    PyObject *lock = SLOT(self, S_LOCK); /* checked on entry; user code may have run since (a GC) */
    if (lock == NULL) {
        Py_DECREF(key);
        PyErr_SetString(PyExc_AttributeError, "'Signal' object has no attribute '_lock'");
        return NULL;
    }
    Py_INCREF(lock);
    PyObject *swept = NULL, *removed = NULL, *result = NULL, *old_routes = NULL;
    /* Without the lock only if nothing in the section calls Python code (see
     * lock_free_section): a record with a sender of its own is forgotten by
     * its anchor, here when the anchor holds this connection alone. */
    int quiet = lock_free_section(self, lock);
    if (quiet < 0) {
        goto done;
    }
    if (quiet) {
        quiet = anchor_forgets_alone(SLOT(self, S_RECORDS), key);
        if (quiet < 0) {
            goto done;
        }
    }
    if (!quiet && call_method0(lock, str_acquire) < 0) {
        goto done;
    }
    /* ---- under the lock (or atomic under the GIL) */
    PyObject *dead = SLOT(self, S_DEAD);
    int truth = dead == NULL ? 0 : PyObject_IsTrue(dead);
    if (truth < 0) {
        goto unlock;
    }
    if (truth) {
        swept = PyObject_CallMethodNoArgs(self, str_sweep); /* freed after the lock is released */
        if (swept == NULL) {
            goto unlock;
        }
    }
    /* Keep the record until the lock is released: it may hold the last
     * reference to a receiver whose __del__ uses this signal. */
    PyObject *records = SLOT(self, S_RECORDS); /* checked on entry; user code ran since */
    if (records == NULL || !PyDict_CheckExact(records)) {
        PyErr_SetString(PyExc_SystemError, "tocsin: Signal._records is no longer a dict");
        goto unlock;
    }
    removed = PyDict_GetItemWithError(records, key);
    if (removed == NULL) {
        if (!PyErr_Occurred()) {
            Py_INCREF(Py_False);
            result = Py_False;
        }
        goto unlock;
    }
    Py_INCREF(removed);
    if (PyDict_DelItem(records, key) < 0) {
        goto unlock;
    }
    if (!PyTuple_CheckExact(removed) || PyTuple_GET_SIZE(removed) != 3) {
        PyErr_Format(PyExc_SystemError, "tocsin: Signal._records holds %R, not a record", removed);
        goto unlock;
    }
    PyObject *link = PyTuple_GET_ITEM(removed, 2);
    if (link != Py_None) { /* a sender of its own: the anchor forgets this connection */
        PyObject *anchor = PyTuple_CheckExact(link) ? PyTuple_GET_ITEM(link, 0) : link;
        if (quiet) { /* records.detach() for an anchor holding this connection alone */
            if (anchor_set(anchor, A_CONNS, Py_None) < 0) {
                goto unlock;
            }
        }
        else if ((PyObject *)Py_TYPE(anchor) == SENDER_REF) {
            PyObject *detached = PyObject_CallFunctionObjArgs(DETACH, anchor, key, NULL);
            if (detached == NULL) {
                goto unlock;
            }
            Py_DECREF(detached);
        }
    }
    if (!quiet && note_change(self, Py_False, removed, Py_False) < 0) {
        goto unlock;
    }
    if (invalidate(self, &old_routes) < 0) {
        goto unlock;
    }
    Py_INCREF(Py_True);
    result = Py_True;
    /* ---- released on every path */
unlock:
    if (!quiet && release(lock) < 0) {
        Py_CLEAR(result);
    }
    if (sweep_if_dead(self) < 0) {
        Py_CLEAR(result);
    }
    if (result == Py_True && report_changes(self) < 0) {
        Py_CLEAR(result);
    }
done:
    Py_XDECREF(removed);
    Py_XDECREF(old_routes);
    Py_XDECREF(swept);
    Py_DECREF(lock);
    Py_DECREF(key);
    return result;

fallback:
    Py_RETURN_NOTIMPLEMENTED;
}

/* ---- connect() and disconnect() as methods ----------------------------------
 *
 * The descriptors replacing Signal.connect and Signal.disconnect: their
 * arguments are matched to the parameters as Python would, and the common
 * case runs above; any other call (other options, other receivers, an
 * unknown or repeated keyword, too many arguments) goes to the pure-Python
 * method with the very arguments given, which raises or does the rest.
 * The reference counts _inline.py reads there are calibrated through this
 * same path (signal.py calibrates after installing these). */

enum { C_SELF, C_RECEIVER, C_SENDER, C_WEAK, C_DISPATCH_UID, C_KEYWORDS_ONLY, C_PRIORITY, C_VIA,
       C_ON_ERROR, N_CONNECT_PARAMS };

/* The parameter a keyword names, or -1 (the placeholder is never named). */
static int
connect_param(PyObject *name, int n_params)
{
    PyObject *const names[N_CONNECT_PARAMS] = {NULL, str_receiver, str_sender, str_weak, str_dispatch_uid,
                                               NULL, str_priority, str_via, str_on_error};
    for (int i = 1; i < n_params; i++) { /* interned names: identity first */
        if (names[i] == name) {
            return i;
        }
    }
    for (int i = 1; i < n_params; i++) {
        if (names[i] != NULL && is_name(name, names[i])) {
            return i;
        }
    }
    return -1;
}

/* Match a call's arguments to the first *n_params* of connect()'s
 * parameters, defaults filled in (borrowed); 0 if Python must handle it. */
static int
match_params(PyObject **params, int n_params, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs < 1 || nargs > (n_params < C_KEYWORDS_ONLY ? n_params : C_KEYWORDS_ONLY)) {
        return 0; /* no self, or an argument the placeholder would receive (Python refuses it) */
    }
    PyObject *const defaults[N_CONNECT_PARAMS] = {NULL, Py_None, Py_None, Py_True, Py_None,
                                                  KEYWORDS_ONLY, NO_PRIORITY, Py_None, Py_None};
    char given[N_CONNECT_PARAMS] = {0};
    for (int i = 0; i < n_params; i++) {
        params[i] = i < nargs ? args[i] : defaults[i];
        given[i] = i < nargs;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        int at = connect_param(PyTuple_GET_ITEM(kwnames, k), n_params);
        if (at < 0 || given[at]) {
            return 0; /* unknown or repeated: Python raises TypeError */
        }
        params[at] = args[nargs + k];
        given[at] = 1;
    }
    return 1;
}

#if PY_VERSION_HEX >= 0x030B0000
/* The receiver of a connect() call, borrowed (NULL if none was given). */
static PyObject *
receiver_argument(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs > 1) {
        return args[1];
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        if (is_name(PyTuple_GET_ITEM(kwnames, k), str_receiver)) {
            return args[nargs + k];
        }
    }
    return NULL;
}
#endif

static PyObject *
fast_connect_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *params[N_CONNECT_PARAMS];
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (match_params(params, N_CONNECT_PARAMS, args, nargs, kwnames)
        && params[C_ON_ERROR] == Py_None) { /* on_error=: stored by the Python path only */
        PyObject *done = connect_common(NULL, params, C_ON_ERROR);
        if (done != Py_NotImplemented) {
            return done;
        }
        Py_DECREF(done);
    }
    PyObject *fallback = ((FastSend *)callable)->fallback;
#if PY_VERSION_HEX >= 0x030B0000
    /* The Python method reads the receiver's reference count (_inline.py).
     * In pure Python, from 3.11, a call made by the interpreter's CALL hands
     * its references over to the method's frame, while a call through a
     * bound method object (`@sig.connect` bare, `m = sig.connect; m(f)`) or
     * from C code lends them, and the frame takes one more: so a bare
     * decorator is told from `sig.connect(make())`. Here both arrive
     * lent; only the interpreter's CALL sets PY_VECTORCALL_ARGUMENTS_OFFSET
     * (a bound method's call clears it), so a call without it gets the extra
     * reference pure Python would have seen. */
    if (!(nargsf & PY_VECTORCALL_ARGUMENTS_OFFSET)) {
        PyObject *receiver = receiver_argument(args, nargs, kwnames);
        Py_XINCREF(receiver);
        PyObject *result = PyObject_Vectorcall(fallback, args, nargsf, kwnames);
        Py_XDECREF(receiver);
        return result;
    }
#endif
    return PyObject_Vectorcall(fallback, args, nargsf, kwnames);
}

static PyObject *
fast_disconnect_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* disconnect(self, receiver=None, sender=None, dispatch_uid=None): connect()'s first four. */
    PyObject *params[N_CONNECT_PARAMS];
    if (match_params(params, C_WEAK, args, PyVectorcall_NARGS(nargsf), kwnames)) {
        /* A dispatch_uid (by position or keyword) is left to Python above. */
        PyObject *call[4] = {params[C_SELF], params[C_RECEIVER], params[C_SENDER], Py_None};
        PyObject *done = disconnect_common(NULL, call, 4);
        if (done != Py_NotImplemented) {
            return done;
        }
        Py_DECREF(done);
    }
    return PyObject_Vectorcall(((FastSend *)callable)->fallback, args, nargsf, kwnames);
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
