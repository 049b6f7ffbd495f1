import base64
import html
import json
import re
from urllib.parse import quote, quote_plus

import pytest

from exporter.redact import RecoveryLink, mask_values, redact_text, redact_url, scrub

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


# A password with every character the encodings below change.
ODD_PASSWORD = 'Hunter2 <&"x\'/%+>pw'


UMLAUTS = "pässwörd-ü"


@pytest.mark.parametrize("secret,encoded", [
    (ODD_PASSWORD, ODD_PASSWORD),
    (ODD_PASSWORD, quote(ODD_PASSWORD, safe="")),
    (ODD_PASSWORD, quote(ODD_PASSWORD)),  # "/" kept, as a path or a query string shows it
    (ODD_PASSWORD, re.sub("%..", lambda m: m[0].lower(), quote(ODD_PASSWORD, safe=""))),
    (ODD_PASSWORD, quote_plus(ODD_PASSWORD)),
    (ODD_PASSWORD, html.escape(ODD_PASSWORD)),
    (ODD_PASSWORD, html.escape(ODD_PASSWORD, quote=False)),
    (ODD_PASSWORD, json.dumps(ODD_PASSWORD)[1:-1]),
    (UMLAUTS, json.dumps(UMLAUTS)[1:-1]),  # \u escapes
    (UMLAUTS, quote(UMLAUTS)),  # UTF-8 bytes escaped
    (ODD_PASSWORD, base64.b64encode(ODD_PASSWORD.encode()).decode()),
    (ODD_PASSWORD, base64.urlsafe_b64encode(ODD_PASSWORD.encode()).decode().rstrip("=")),
], ids=["plain", "url", "url_path", "url_lower", "url_plus", "html", "html_text", "json",
        "json_unicode", "url_utf8", "base64", "base64url"])
def test_a_secret_echoed_in_an_encoding_is_masked_too(secret, encoded):
    # A hostile or careless service quotes what it was sent as it received it: URL-encoded from
    # a query, JSON-escaped from a body, HTML-escaped from a template, base64 from a header.
    text = f"HTTP 404: unknown password {encoded} for user"
    assert mask_values(text, [secret]) == "HTTP 404: unknown password *** for user"
    assert scrub(text, [secret]) == "HTTP 404: unknown password *** for user"


def test_masking_encodings_leaves_other_text_alone():
    assert mask_values("order 42 at 10:00 & done", ["Hunter2"]) == "order 42 at 10:00 & done"
    assert mask_values("a b+c", [""]) == "a b+c"
