/* _speedups_state.h: the objects of the core the compiled methods use (set by setup()), the
 * caches of keyword-name tuples and sender ids, the signal's slots, and the
 * descriptor type's layout.
 *
 * Part of _speedups.c, which includes it once (one translation unit: the
 * functions stay static and the compiler sees them all); not a header to
 * include elsewhere. */
#ifndef TOCSIN__SPEEDUPS_STATE_H
#define TOCSIN__SPEEDUPS_STATE_H

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

#endif /* TOCSIN__SPEEDUPS_STATE_H */
