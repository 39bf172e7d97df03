// campusguard console: the login page. Posts {name, password} to /login; the gateway answers
// with an HttpOnly session cookie, then the console takes over at the page that sent the user
// here (`?next=/#/alarms/17`), or at /.
(function () {
  "use strict";
  const { t, setLang, apply } = window.CG_I18N;
  apply();
  document.getElementById("lang-switch").addEventListener("click", () => {
    setLang(window.CG_I18N.lang === "en" ? "zh-CN" : "en");
    apply();
  });
  // Where to go after logging in: the page that sent us here (`?next=`), if it is one of ours.
  function nextPage() {
    const next = new URLSearchParams(location.search).get("next") || "/";
    return next.startsWith("/") && !next.startsWith("//") && !next.includes("\\") ? next : "/";
  }
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const body = {
      name: document.getElementById("login-name").value.trim(),
      password: document.getElementById("login-password").value,
    };
    try {
      const resp = await fetch("/login", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body), credentials: "same-origin",
      });
      if (resp.ok) { location.href = nextPage(); return; }
      error.textContent = resp.status === 429 ? t("login_locked") : t("login_failed");
    } catch (e) {
      error.textContent = t("stream_down");
    }
    error.hidden = false;
  });
})();
