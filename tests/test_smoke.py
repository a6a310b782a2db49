from tests.factories import bearer, make_admin, make_token


def test_healthz_names_the_database(client, backend):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": backend}


def test_me_with_token(client, db):
    admin = make_admin(db, username="root-admin")
    response = client.get("/api/v1/me", headers=bearer(make_token(db, admin)))
    assert response.status_code == 200
    assert response.json()["username"] == "root-admin"
