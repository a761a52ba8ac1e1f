/*
 * appliance — optional progressive enhancement. Every page works without it.
 *  - forms marked data-autosubmit (OAuth response_mode=form_post) submit themselves;
 *  - password fields get a Show/Hide button;
 *  - a form is not submitted twice by a double click.
 */
(function () {
  "use strict";

  // Password visibility toggle.
  function addReveal(input) {
    var wrap = input.parentElement;
    if (!wrap || wrap.querySelector(".reveal")) return;
    var button = document.createElement("button");
    button.type = "button";
    button.className = "reveal";
    button.textContent = "Show";
    button.setAttribute("aria-controls", input.id);
    button.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-label", "Show password");
    button.addEventListener("click", function () {
      var show = input.type === "password";
      input.type = show ? "text" : "password";
      button.textContent = show ? "Hide" : "Show";
      button.setAttribute("aria-pressed", show ? "true" : "false");
      input.focus();
    });
    wrap.classList.add("has-reveal");
    wrap.appendChild(button);
  }

  // Never leave a revealed password in the DOM when the form is sent.
  function hidePasswords(form) {
    var revealed = form.querySelectorAll(".has-reveal .input[type=text]");
    for (var i = 0; i < revealed.length; i++) {
      revealed[i].type = "password";
    }
  }

  // Ignore a second submission of the same form (double click).
  function guard(form) {
    form.addEventListener("submit", function (event) {
      if (form.getAttribute("data-submitting") === "1") {
        event.preventDefault();
        return;
      }
      form.setAttribute("data-submitting", "1");
      hidePasswords(form);
    });
  }

  function init() {
    var passwords = document.querySelectorAll(".input-wrap-password .input");
    for (var i = 0; i < passwords.length; i++) addReveal(passwords[i]);

    var forms = document.querySelectorAll("form");
    for (var j = 0; j < forms.length; j++) guard(forms[j]);

    var auto = document.querySelector("form[data-autosubmit]");
    if (auto) {
      auto.setAttribute("data-submitting", "1");
      auto.submit();
    }
  }

  // Coming back through the history cache: allow submitting again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    var forms = document.querySelectorAll("form[data-submitting]");
    for (var i = 0; i < forms.length; i++) forms[i].removeAttribute("data-submitting");
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
