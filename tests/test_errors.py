"""The one line a user sees for an error, also when a DataLoader worker raised it."""

import sys

import pytest
from torch._utils import ExceptionWrapper

from cnnlab.errors import DataChangedError, DataError, message_of


def test_plain_errors_show_their_first_line():
    assert message_of(DataError("first\nsecond")) == "first"
    assert message_of(DataError("")) == ""


def test_an_error_re_raised_from_a_worker_shows_the_workers_message():
    try:
        raise DataChangedError("ants/a.png changed or vanished after the data was checked")
    except DataChangedError:
        wrapper = ExceptionWrapper(sys.exc_info(), where="in DataLoader worker process 0")
    with pytest.raises(DataChangedError) as info:
        wrapper.reraise()  # what the DataLoader does in the main process
    assert str(info.value).startswith("Caught DataChangedError in DataLoader worker process 0")
    assert message_of(info.value) == "ants/a.png changed or vanished after the data was checked"
