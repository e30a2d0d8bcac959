# SPDX-License-Identifier: BSD-3-Clause
"""Certificates and PSK keys for the TLS tests, made with certtool and
psktool in the test's own directory.

    pki = Pki(tmp_path)
    pki.server_dir      ca-cert.pem, server-cert.pem, server-key.pem
    pki.client_dir      ca-cert.pem, client-cert.pem, client-key.pem
    pki.client_dir_other_ca / pki.client_dir_expired
    pki.psk_dir         keys.psk with user "alice"
    pki.psk_dir_wrong   keys.psk with a different key for "alice"
"""
import os
import subprocess

CLIENT_DN = ("C=GB,ST=London,L=London,O=Strata Test,"
             "CN=client.example.com")


def _run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Pki:
    def __init__(self, tmp_path):
        self.root = str(tmp_path / "pki")
        os.makedirs(self.root, exist_ok=True)
        self.ca_key, self.ca_cert = self._ca("ca")
        other_key, other_cert = self._ca("ca-other")
        self.server_dir = self._leaf("server", "server", self.ca_key,
                                     self.ca_cert, "cn = localhost\n"
                                     "dns_name = localhost\n"
                                     "ip_address = 127.0.0.1\n"
                                     "tls_www_server\n")
        client_tmpl = ("country = GB\nstate = London\nlocality = London\n"
                       "organization = Strata Test\n"
                       "cn = client.example.com\ntls_www_client\n")
        self.client_dir = self._leaf("client", "client", self.ca_key,
                                     self.ca_cert, client_tmpl)
        # Signed by another CA, but trusting ours (so only the server's
        # check of the client fails).
        self.client_dir_other_ca = self._leaf(
            "client-other", "client", other_key, other_cert, client_tmpl,
            trust=self.ca_cert)
        self.client_dir_expired = self._leaf(
            "client-expired", "client", self.ca_key, self.ca_cert,
            client_tmpl + 'activation_date = "2019-01-01 00:00:00 UTC"\n'
            'expiration_date = "2020-01-01 00:00:00 UTC"\n')
        self.psk_dir = self._psk("psk")
        self.psk_dir_wrong = self._psk("psk-wrong")

    def _ca(self, name):
        key = os.path.join(self.root, f"{name}-key.pem")
        cert = os.path.join(self.root, f"{name}-cert.pem")
        tmpl = os.path.join(self.root, f"{name}.info")
        _write(tmpl, f"cn = Strata {name}\nca\ncert_signing_key\n"
               "expiration_days = 30\n")
        _run("certtool", "--generate-privkey", "--outfile", key)
        _run("certtool", "--generate-self-signed", "--load-privkey", key,
             "--template", tmpl, "--outfile", cert)
        return key, cert

    def _leaf(self, name, role, ca_key, ca_cert, tmpl, trust=None):
        d = os.path.join(self.root, name)
        os.makedirs(d, exist_ok=True)
        info = os.path.join(self.root, f"{name}.info")
        if "expiration_date" not in tmpl:
            tmpl += "expiration_days = 30\n"
        _write(info, tmpl + "encryption_key\nsigning_key\n")
        key = os.path.join(d, f"{role}-key.pem")
        _run("certtool", "--generate-privkey", "--outfile", key)
        _run("certtool", "--generate-certificate", "--load-privkey", key,
             "--load-ca-certificate", ca_cert, "--load-ca-privkey", ca_key,
             "--template", info, "--outfile",
             os.path.join(d, f"{role}-cert.pem"))
        with open(trust or ca_cert) as src:
            _write(os.path.join(d, "ca-cert.pem"), src.read())
        return d

    def _psk(self, name):
        d = os.path.join(self.root, name)
        os.makedirs(d, exist_ok=True)
        _run("psktool", "-u", "alice", "-p", os.path.join(d, "keys.psk"))
        return d
