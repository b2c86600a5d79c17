from tests.conftest import JSONAPI, PASSWORD, resource


def test_signup_login_and_read_self(client):
    response = client.post("/v1/users", json=resource("users", {"email": "New@Example.com", "password": PASSWORD}),
                           headers={"Content-Type": JSONAPI})
    assert response.status_code == 201, response.get_json()
    user_id = response.get_json()["data"]["id"]
    login = client.post("/v1/auth/login", json={"email": "new@example.com", "password": PASSWORD})
    assert login.status_code == 200
    token = login.get_json()["meta"]["access_token"]
    me = client.get(f"/v1/users/{user_id}", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.get_json()["data"]["attributes"]["email"] == "new@example.com"
    assert "password" not in me.get_data(as_text=True)
