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
 * one matched by identity): module functions those Python methods call
 * first, answering NotImplemented for every other case. The methods stay
 * Python functions: _inline.py reads the reference counts of calls into
 * Signal.connect, which a C entry point would change.
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
static PyObject *SIXTY_FOUR = NULL;      /* 64 */
static PyObject *KEYWORDS_ONLY = NULL;   /* signal._KEYWORDS_ONLY, connect()'s placeholder */
static PyObject *NO_PRIORITY = NULL;     /* the int 0, compared by identity as connect() does */
static PyObject *str_acquire, *str_release, *str_sweep, *str_sweep_released, *str_report_changes,
    *str_connection_watcher, *str_watches, *str_conns, *str_key, *str_lambda;

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
    int kind; /* K_SEND or K_SEND_ROBUST */
} FastSend;

enum { K_SEND, K_SEND_ROBUST };

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
 * The Python methods call these first and go on themselves on
 * NotImplemented (other receivers, weak=False, dispatch_uid=, priority=,
 * via=, other senders).
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

/* Under the lock: invalidate the routes and tell the publication watcher. */
static int
invalidate(PyObject *self)
{
    set_slot(self, S_ROUTES, STALE_TABLE);
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
    if (key == NULL || PyObject_SetAttr(anchor, str_conns, Py_None) < 0
        || PyObject_SetAttr(anchor, str_key, key) < 0) { /* key last: see records.find_anchor */
        Py_XDECREF(key);
        Py_DECREF(anchor);
        return NULL;
    }
    Py_DECREF(key);
    return anchor;
}

/* id(receiver) << 64 | id(sender): records.connection_key for two ids. */
static PyObject *
pair_key(PyObject *receiver, PyObject *sender)
{
    PyObject *rkey = PyLong_FromVoidPtr(receiver);
    if (rkey == NULL) {
        return NULL;
    }
    PyObject *shifted = PyNumber_Lshift(rkey, SIXTY_FOUR);
    Py_DECREF(rkey);
    if (shifted == NULL) {
        return NULL;
    }
    PyObject *skey = id_of(sender);
    if (skey == NULL) {
        Py_DECREF(shifted);
        return NULL;
    }
    PyObject *key = PyNumber_Or(shifted, skey);
    Py_DECREF(shifted);
    Py_DECREF(skey);
    return key;
}

/* connect(signal, receiver, sender, weak, dispatch_uid, keywords_only, priority, via):
 * Signal.connect() calls it first, with its own arguments; NotImplemented
 * means "not the common case": connect() goes on in Python, as if this had
 * not been called (nothing was changed). Signal.connect() stays the entry
 * point, so the reference counts _inline reads are those of pure Python. */
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
    PyObject *lock = NULL, *swept = NULL, *result = NULL, *stored = NULL;
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
        PyObject *skey = PyObject_GetAttr(anchor, str_key);
        if (skey == NULL) {
            goto done;
        }
        PyObject *rkey = PyLong_FromVoidPtr(receiver);
        PyObject *shifted = rkey == NULL ? NULL : PyNumber_Lshift(rkey, SIXTY_FOUR);
        Py_XDECREF(rkey);
        key = shifted == NULL ? NULL : PyNumber_Or(shifted, skey);
        Py_XDECREF(shifted);
        Py_DECREF(skey);
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
    if (call_method0(lock, str_acquire) < 0) {
        goto done;
    }
    /* ---- under the lock */
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
        PyObject *conns = PyObject_GetAttr(anchor, str_conns);
        if (conns == NULL) {
            goto unlock;
        }
        int first = conns == Py_None;
        Py_DECREF(conns);
        if (first) {
            if (PyObject_SetAttr(anchor, str_conns, key) < 0) {
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
    if (invalidate(self) < 0) {
        goto unlock;
    }
    set_slot(self, S_UNSCANNED, Py_True); /* look for module copies at the next rebuild */
    if (note_change(self, Py_True, record, receiver) < 0) {
        goto unlock;
    }
    Py_INCREF(receiver);
    result = receiver;
    /* ---- released on every path */
unlock:
    if (release(lock) < 0) {
        Py_CLEAR(result);
    }
    if (sweep_if_dead(self) < 0) {
        Py_CLEAR(result);
    }
    if (result != NULL && stored == record && report_changes(self) < 0) {
        Py_CLEAR(result);
    }
done:
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

/* disconnect(signal, receiver, sender, dispatch_uid): Signal.disconnect()'s
 * common case (a function, no dispatch_uid, any sender or one matched by
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
    PyObject *swept = NULL, *removed = NULL, *result = NULL;
    if (call_method0(lock, str_acquire) < 0) {
        goto done;
    }
    /* ---- under the lock */
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
        if ((PyObject *)Py_TYPE(anchor) == SENDER_REF) {
            PyObject *detached = PyObject_CallFunctionObjArgs(DETACH, anchor, key, NULL);
            if (detached == NULL) {
                goto unlock;
            }
            Py_DECREF(detached);
        }
    }
    if (note_change(self, Py_False, removed, Py_False) < 0) {
        goto unlock;
    }
    if (invalidate(self) < 0) {
        goto unlock;
    }
    Py_INCREF(Py_True);
    result = Py_True;
    /* ---- released on every path */
unlock:
    if (release(lock) < 0) {
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
    Py_XDECREF(swept);
    Py_DECREF(lock);
    Py_DECREF(key);
    return result;

fallback:
    Py_RETURN_NOTIMPLEMENTED;
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
    int kind;
    if (!PyArg_ParseTuple(args, "Oi:make_send", &fallback, &kind)) {
        return NULL;
    }
    if (kind != K_SEND && kind != K_SEND_ROBUST) {
        PyErr_Format(PyExc_ValueError, "make_send() expects 0 (send) or 1 (send_robust); got %d", kind);
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
    fs->kind = kind;
    PyObject_GC_Track(fs);
    return (PyObject *)fs;
}

static PyObject *
setup(PyObject *module, PyObject *args)
{
    PyObject *signal_type, *empty_routes, *default_key, *missing, *stale_table, *sender_ref, *attach,
        *detach, *hooks, *weakrefcount, *anchor_finder, *keywords_only, *no_priority;
    if (!PyArg_ParseTuple(args, "O!O!OOO!OOOOOOOO:setup", &PyType_Type, &signal_type, &PyDict_Type,
                          &empty_routes, &default_key, &missing, &PyDict_Type, &stale_table, &sender_ref,
                          &attach, &detach, &hooks, &weakrefcount, &anchor_finder, &keywords_only,
                          &no_priority)) {
        return NULL;
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
#undef KEEP
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"make_send", make_send, METH_VARARGS,
     "make_send(method, kind, /)\n--\n\nThe compiled send (kind 0) or send_robust (1) replacing *method*."},
    {"connect", (PyCFunction)(void (*)(void))connect_common, METH_FASTCALL,
     "connect(signal, receiver, sender, weak, dispatch_uid, keywords_only, priority, via, /)\n--\n\n"
     "Signal.connect()'s common case; NotImplemented for any other."},
    {"disconnect", (PyCFunction)(void (*)(void))disconnect_common, METH_FASTCALL,
     "disconnect(signal, receiver, sender, dispatch_uid, /)\n--\n\n"
     "Signal.disconnect()'s common case; NotImplemented for any other."},
    {"setup", setup, METH_VARARGS,
     "setup(signal_class, empty_routes, default_key, missing, stale_table, sender_ref, attach, detach, "
     "hooks, getweakrefcount, find_anchor, keywords_only, no_priority, /)\n--\n\nThe objects of the core the compiled methods use."},
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
#undef INTERN
    SIXTY_FOUR = PyLong_FromLong(64);
    if (SIXTY_FOUR == NULL) {
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
