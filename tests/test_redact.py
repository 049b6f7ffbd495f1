import pytest

from exporter.redact import RecoveryLink, redact_text, redact_url

KEY = "0123456789abcdef0123456789abcdef"
CODE = "fedcba9876543210fedcba9876543210"


@pytest.mark.parametrize("url,expected", [
    (f"https://pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}",
     "https://pizza-factory.cs329.click/api/support/***/report/***"),
    (f"https://cs329.cs.byu.edu/api/report?apiKey={KEY}&fixCode={CODE}",
     "https://cs329.cs.byu.edu/api/report?apiKey=***&fixCode=***"),
    (f"http://127.0.0.1:3001/api/support/{KEY}/report/{CODE}",
     "http://127.0.0.1:3001/api/support/***/report/***"),
    (f"https://user:{KEY}@host/x#{CODE}", "https://host/***"),
    ("not a url", "***"),
    (f"file:///etc/{KEY}", "***"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_text_masks_urls_and_cuts():
    text = f"go to https://h/api/support/{KEY}/report/{CODE} now " + "x" * 300
    out = redact_text(text)
    assert KEY not in out and CODE not in out and len(out) <= 120
    assert out.startswith("go to https://h/api/support/***/report/*** now")


def test_recovery_link_prints_redacted_only():
    url = f"https://pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}"
    link = RecoveryLink(url, "followLinkToEndChaos")
    for text in (str(link), repr(link), f"{link}", "%s" % link):  # noqa: UP031 (each form is under test)
        assert KEY not in text and CODE not in text
    assert link.reveal() == url
