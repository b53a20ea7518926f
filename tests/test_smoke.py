import tocsin


def test_send_reaches_receiver():
    sig = tocsin.Signal()

    def handler(sender, **kwargs):
        return sender

    sig.connect(handler)
    assert sig.send("s") == [(handler, "s")]
