from tests.conftest import Api


async def test_a_shipped_rc_is_the_running_version(api: Api) -> None:
    await api.ship("production", "v1.0.0-rc1")
    reply = await api.get("/api/releases/Backend/environments")
    production = next(e for e in reply.body if e["name"] == "production")
    assert production["running_release_candidate_version"] == "v1.0.0-rc1"
