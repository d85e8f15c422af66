"""The centre's web side: the operator dashboard (login) and the public open-data part."""
