import pytest

from proxy.errors import Unauthorized
from proxy.tokens import TileTokens


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_minted_token_opens_its_server_until_it_expires(clock: Clock) -> None:
    tokens = TileTokens(b"k" * 32, clock)
    token, expires = tokens.mint("abc123", ttl=600)
    assert expires == 1_800_000_600
    tokens.verify(token, "abc123")
    clock.now += 599
    tokens.verify(token, "abc123")  # also through the verified-token memo
    clock.now += 2
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token, "abc123")


def test_a_token_does_not_open_another_server(clock: Clock) -> None:
    tokens = TileTokens(b"k" * 32, clock)
    token, _ = tokens.mint("abc123", ttl=600)
    with pytest.raises(Unauthorized, match="another server"):
        tokens.verify(token, "abc12")  # a prefix of the id is another server too
    with pytest.raises(Unauthorized, match="another server"):
        tokens.verify(token, "zzz")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace("abc123", "abc124", 1),  # other server, old signature
        lambda t: t.replace(".1800000600.", ".1900000600."),  # later expiry
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: t + "x",
        lambda t: "",
        lambda t: "a.b.c",
        lambda t: t.replace(".", "\n", 1),
    ],
)
def test_a_tampered_token_is_refused(clock: Clock, tamper) -> None:  # type: ignore[no-untyped-def]
    tokens = TileTokens(b"k" * 32, clock)
    token, _ = tokens.mint("abc123", ttl=600)
    bad = tamper(token)
    with pytest.raises(Unauthorized):
        tokens.verify(bad, "abc123")
        tokens.verify(bad, "abc124")


def test_another_installation_secret_refuses_the_token(clock: Clock) -> None:
    token, _ = TileTokens(b"k" * 32, clock).mint("abc123", ttl=600)
    with pytest.raises(Unauthorized, match="not valid"):
        TileTokens(b"j" * 32, clock).verify(token, "abc123")
