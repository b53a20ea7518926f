/* _speedups_section.h: what connect() and disconnect() do under the signal's lock (or, when
 * nothing in it runs Python code and the lock is free, without it).
 *
 * Part of _speedups.c, which includes it once (one translation unit: the
 * functions stay static and the compiler sees them all); not a header to
 * include elsewhere. */
#ifndef TOCSIN__SPEEDUPS_SECTION_H
#define TOCSIN__SPEEDUPS_SECTION_H

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

/* First in the section: sweep what died if `_dead` is set (the dropped
 * records go to *swept*, to be freed after the section), then the records
 * dict, borrowed; NULL with an exception set on error. */
static PyObject *
section_records(PyObject *self, PyObject **swept)
{
    PyObject *dead = SLOT(self, S_DEAD);
    int truth = dead == NULL ? 0 : PyObject_IsTrue(dead);
    if (truth < 0) {
        return NULL;
    }
    if (truth) {
        *swept = PyObject_CallMethodNoArgs(self, str_sweep);
        if (*swept == NULL) {
            return NULL;
        }
    }
    PyObject *records = SLOT(self, S_RECORDS); /* checked on entry; user code may have run since */
    if (records == NULL || !PyDict_CheckExact(records)) {
        PyErr_SetString(PyExc_SystemError, "tocsin: Signal._records is no longer a dict");
        return NULL;
    }
    return records;
}

/* Last: release the lock unless the section ran without it (*quiet*), then
 * sweep what died meanwhile; keeps the exception being raised, if any; -1 on
 * a new error. */
static int
leave_section(PyObject *self, PyObject *lock, int quiet)
{
    int failed = !quiet && release(lock) < 0;
    if (sweep_if_dead(self) < 0) {
        failed = 1;
    }
    return failed ? -1 : 0;
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

#endif /* TOCSIN__SPEEDUPS_SECTION_H */
