/*
 * appliance — passkeys (WebAuthn). Forms marked data-passkey="create" or "get" carry the
 * server's options in data-options; this script shows them when the browser supports WebAuthn,
 * runs the ceremony on submit, puts the answer (JSON, base64url fields) into the form's
 * `credential` field and submits it. Nothing else on the page depends on it.
 */
(function () {
  "use strict";

  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function ids(list) {
    if (!list) return list;
    return list.map(function (c) {
      var copy = Object.assign({}, c);
      copy.id = toBytes(c.id);
      return copy;
    });
  }

  function creationOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = toBytes(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: toBytes(pk.user.id) });
    pk.excludeCredentials = ids(pk.excludeCredentials);
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = toBytes(pk.challenge);
    pk.allowCredentials = ids(pk.allowCredentials);
    return { publicKey: pk };
  }

  function encode(cred) {
    var r = cred.response;
    var out = {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: toB64url(r.clientDataJSON) },
    };
    if (r.attestationObject) {
      out.response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = toB64url(r.authenticatorData);
      out.response.signature = toB64url(r.signature);
      out.response.userHandle = r.userHandle ? toB64url(r.userHandle) : null;
    }
    return JSON.stringify(out);
  }

  function setup(form) {
    var mode = form.getAttribute("data-passkey");
    var options;
    try {
      options = JSON.parse(form.getAttribute("data-options"));
    } catch (e) {
      return;
    }
    form.hidden = false;
    var status = form.querySelector(".passkey-status");
    form.addEventListener("submit", function (event) {
      var field = form.querySelector("input[name=credential]");
      if (field.value) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      var ceremony =
        mode === "create"
          ? navigator.credentials.create(creationOptions(options))
          : navigator.credentials.get(requestOptions(options));
      ceremony.then(
        function (cred) {
          field.value = encode(cred);
          form.submit();
        },
        function (err) {
          if (status) {
            // The page gives the text in its language; {reason} is the browser's error name.
            var text = status.dataset.failed || "The passkey was not used ({reason}). Try again.";
            status.textContent = text.replace("{reason}", err && err.name ? err.name : "error");
            status.hidden = false;
          }
        }
      );
    }, true);
  }

  function init() {
    if (!window.PublicKeyCredential || !navigator.credentials) return;
    var forms = document.querySelectorAll("form[data-passkey]");
    for (var i = 0; i < forms.length; i++) setup(forms[i]);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
