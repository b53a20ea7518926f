/* _speedups_connect.h: the compiled Signal.connect and disconnect: sender anchors, the common
 * cases, and the argument matching of the methods.
 *
 * Part of _speedups.c, which includes it once (one translation unit: the
 * functions stay static and the compiler sees them all); not a header to
 * include elsewhere. */
#ifndef TOCSIN__SPEEDUPS_CONNECT_H
#define TOCSIN__SPEEDUPS_CONNECT_H

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
    PyObject *records = section_records(self, &swept);
    if (records == NULL) {
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
    if (leave_section(self, lock, quiet) < 0) {
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
    /* ---- under the lock (or atomic under the GIL). Keep the record until the
     * section is over: it may hold the last reference to a receiver whose
     * __del__ uses this signal. */
    PyObject *records = section_records(self, &swept);
    if (records == NULL) {
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
    if (leave_section(self, lock, quiet) < 0) {
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

#endif /* TOCSIN__SPEEDUPS_CONNECT_H */
