/* _speedups_send.h: the compiled Signal.send and send_robust: the loop over a published plan.
 *
 * Part of _speedups.c, which includes it once (one translation unit: the
 * functions stay static and the compiler sees them all); not a header to
 * include elsewhere. */
#ifndef TOCSIN__SPEEDUPS_SEND_H
#define TOCSIN__SPEEDUPS_SEND_H

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

#endif /* TOCSIN__SPEEDUPS_SEND_H */
