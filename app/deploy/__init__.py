"""What the package ships for deploying it beside gunicorn: the nginx config (`permctl deploy nginx-config`)."""
