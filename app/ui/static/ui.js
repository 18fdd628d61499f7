// Wavecast campaign form: small enhancements over server-rendered pages.
// No inline scripts anywhere (strict CSP): everything hangs off ids and data- attributes.
"use strict";

(function () {
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  function signInAgain() {
    window.location.assign("/ui/sign-in?next=" + encodeURIComponent(window.location.pathname));
  }

  function postForm(url, form) {
    return fetch(url, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
      credentials: "same-origin",
    }).then(function (response) {
      if (response.status === 401) { signInAgain(); throw new Error("signed out"); }
      return response.json();
    });
  }

  function setList(list, messages) {
    list.textContent = "";
    (messages || []).forEach(function (message) {
      var item = document.createElement("li");
      item.textContent = message;
      list.appendChild(item);
    });
    list.hidden = !messages || messages.length === 0;
  }

  function formatSeconds(seconds) {
    if (seconds < 60) return Math.round(seconds) + " s";
    if (seconds < 3600) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  // ------------------------------------------------------------ repeated rows
  function wireRows(root) {
    root.addEventListener("click", function (event) {
      var target = event.target;
      if (!(target instanceof HTMLElement)) return;
      if (target.hasAttribute("data-remove-row")) {
        var row = target.closest("li");
        var list = row && row.parentElement;
        if (list && list.children.length > 1) {
          row.remove();
        } else if (row) {
          row.querySelectorAll("input").forEach(function (i) { i.value = ""; });
          row.querySelectorAll("select").forEach(function (s) { s.selectedIndex = 0; });
        }
        root.dispatchEvent(new Event("input", { bubbles: true }));
      } else if (target.hasAttribute("data-add-row")) {
        var rows = document.getElementById(target.getAttribute("data-add-row"));
        if (!rows || !rows.lastElementChild) return;
        var copy = rows.lastElementChild.cloneNode(true);
        copy.querySelectorAll("input").forEach(function (i) { i.value = ""; i.removeAttribute("aria-invalid"); });
        copy.querySelectorAll("select").forEach(function (s) { s.selectedIndex = 0; });
        copy.querySelectorAll(".errors").forEach(function (e) { setList(e, []); });
        copy.querySelectorAll("output").forEach(function (o) { o.textContent = "—"; });
        rows.appendChild(copy);
        var first = copy.querySelector("input, select");
        if (first) first.focus();
      }
    });
  }

  // ------------------------------------------------------------ wave checks
  // Each check row shows the inputs of its source only; the others stay in the form (and
  // are ignored by the server), so switching back keeps what was typed.
  function wireChecks(root) {
    function apply() {
      root.querySelectorAll("#checks > li").forEach(function (row) {
        var select = row.querySelector("[data-check-source-select]");
        var source = select ? select.value : "";
        row.querySelectorAll("[data-for-source]").forEach(function (part) {
          part.hidden = part.getAttribute("data-for-source").split(" ").indexOf(source) < 0;
        });
      });
    }
    root.addEventListener("change", apply);
    root.addEventListener("click", function (event) {
      var target = event.target;
      if (target instanceof HTMLElement && target.hasAttribute("data-add-row")) apply();
    });
    apply();
  }

  // ------------------------------------------------------------ new campaign
  function wireCampaignForm(form) {
    wireRows(form);
    wireChecks(form);
    var modes = form.querySelectorAll('input[name="audience_mode"]');
    function showAudience() {
      var mode = form.querySelector('input[name="audience_mode"]:checked');
      form.querySelectorAll("[data-audience]").forEach(function (part) {
        part.hidden = !mode || part.getAttribute("data-audience") !== mode.value;
      });
    }
    modes.forEach(function (m) { m.addEventListener("change", showAudience); });
    showAudience();

    var quietModes = form.querySelectorAll('input[name="quiet_mode"]');
    function showQuietWindow() {
      var mode = form.querySelector('input[name="quiet_mode"]:checked');
      form.querySelectorAll("[data-quiet]").forEach(function (part) {
        part.hidden = !mode || part.getAttribute("data-quiet") !== mode.value;
      });
    }
    quietModes.forEach(function (m) { m.addEventListener("change", showQuietWindow); });
    showQuietWindow();

    var preset = document.getElementById("preset");
    if (preset) {
      preset.addEventListener("change", function () {
        var option = preset.options[preset.selectedIndex];
        var spec = option && option.getAttribute("data-waves");
        if (!spec) return;
        var rows = document.getElementById("waves");
        var template = rows.lastElementChild.cloneNode(true);
        rows.textContent = "";
        spec.split(",").forEach(function (pair) {
          var parts = pair.split(":");
          var row = template.cloneNode(true);
          row.querySelector('input[name="wave_percent"]').value = parts[0];
          row.querySelector('input[name="wave_hold"]').value = parts[1] || "";
          row.querySelectorAll(".errors").forEach(function (e) { setList(e, []); });
          rows.appendChild(row);
        });
        form.dispatchEvent(new Event("input", { bubbles: true }));
      });
    }

    var previews = document.querySelectorAll("[data-preview]");
    function showPreview() {
      previews.forEach(function (el) {
        var source = form.elements.namedItem(el.getAttribute("data-preview"));
        el.textContent = source ? source.value : "";
      });
    }

    var verdict = document.getElementById("guard-verdict");
    var problems = document.getElementById("preview-problems");
    var size = document.getElementById("audience-size");
    var bytes = document.getElementById("payload-bytes");
    var sequence = 0;

    // Each finding has one home (`forms.split_guard`): beside the input it concerns, or, when
    // no input carries it, in the verdict's own list. Never both.
    function showVerdict(guard, rest, anyBeside) {
      verdict.textContent = "";
      var head = document.createElement("p");
      var findings = guard.findings || [];
      verdict.classList.remove("flagged", "refused", "clear");
      if (!guard.allowed) {
        verdict.classList.add("refused");
        head.textContent = guard.overridable
          ? "The guard refuses this campaign unless an operator gives an override reason."
          : "The guard refuses this campaign.";
      } else if (findings.length) {
        verdict.classList.add("flagged");
        head.textContent = guard.overridden
          ? "Overridden; the guard's findings are recorded."
          : "Warning: the guard flags this campaign (it would be refused in production).";
      } else {
        verdict.classList.add("clear");
        head.textContent = "The guard has no objection.";
      }
      if (anyBeside) head.textContent += " Findings are marked beside the fields they concern.";
      if (rest.length) head.textContent += anyBeside ? " Also:" : " Findings:";
      verdict.appendChild(head);
      if (rest.length) {
        var list = document.createElement("ul");
        setList(list, rest);
        verdict.appendChild(list);
      }
    }


    function placeGuard(beside) {
      form.querySelectorAll("[data-guard-for]").forEach(function (list) {
        setList(list, beside[list.getAttribute("data-guard-for")] || []);
      });
      document.querySelectorAll("#waves > li").forEach(function (row, i) {
        var list = row.querySelector("[data-guard-wave]");
        if (list) setList(list, beside["waves." + i] || []);
      });
    }

    function showWaves(preview) {
      var rows = document.querySelectorAll("#waves > li");
      rows.forEach(function (row) {
        row.querySelector("[data-wave-devices]").textContent = "—";
        row.querySelector("[data-wave-duration]").textContent = "—";
      });
      preview.waves.forEach(function (wave, i) {
        var row = rows[preview.wave_rows[i]];
        if (!row) return;
        row.querySelector("[data-wave-devices]").textContent =
          wave.new_devices.toLocaleString() + " new (" + wave.cumulative_devices.toLocaleString() + " in all)";
        row.querySelector("[data-wave-duration]").textContent = formatSeconds(preview.durations[i]);
      });
    }

    // When each time zone's devices would first be sent if the first wave left now.
    var scheduleBox = document.getElementById("schedule-preview");
    function showSchedule(preview) {
      if (!scheduleBox) return;
      var body = scheduleBox.querySelector("tbody");
      body.textContent = "";
      var rules = preview.local_time ? "Each device at " + preview.local_time + " on its own clock" : "Each device as soon as its wave is released";
      rules += preview.quiet_hours ? ", outside quiet hours " + preview.quiet_hours + " (device-local)." : "; no quiet hours.";
      document.getElementById("schedule-rules").textContent = rules;
      preview.schedule.forEach(function (share) {
        var row = document.createElement("tr");
        row.setAttribute("data-zone", share.timezone);
        var zone = share.timezone;
        if (share.without_zone) zone += " (" + share.without_zone.toLocaleString() + " without a zone: the default)";
        var when = share.first_send_at.slice(0, 16).replace("T", " ");
        if (share.after_quiet_hours) when += ", after quiet hours";
        if (share.past_deadline) when += ", past the deadline: would expire";
        [zone, share.devices.toLocaleString(), when, share.local_time_there].forEach(function (text, i) {
          var cell = document.createElement("td");
          cell.textContent = text;
          cell.setAttribute("data-col", ["zone", "devices", "first", "local"][i]);
          row.appendChild(cell);
        });
        body.appendChild(row);
      });
      var more = document.getElementById("schedule-more");
      more.hidden = !preview.schedule_more_zones;
      more.textContent = preview.schedule_more_zones
        ? "And " + preview.schedule_more_zones.toLocaleString() + " more zones (" + preview.schedule_more_devices.toLocaleString() + " devices), later."
        : "";
      scheduleBox.hidden = preview.schedule.length === 0;
    }

    // Errors of the fields that carry their own list (timing), placed beside them live.
    var BESIDE = ["local_time", "quiet_hours", "expires_at", "priority", "max_opens_per_second", "checks"];
    function besideInput(field) {
      return BESIDE.indexOf(field) >= 0 || /^checks\.\d+$/.test(field);
    }
    function placeErrors(errors) {
      BESIDE.forEach(function (name) {
        var list = form.querySelector('[data-errors-for="' + name + '"]');
        if (list) setList(list, errors[name] || []);
      });
      form.querySelectorAll("#checks > li").forEach(function (row, i) {
        var list = row.querySelector("[data-check-errors]");
        if (list) setList(list, errors["checks." + i] || []);
      });
    }

    function refresh() {
      var mine = ++sequence;
      postForm(form.getAttribute("data-audience-url"), form).then(function (answer) {
        if (mine !== sequence) return;
        if (answer.ok) {
          var parts = Object.keys(answer.by_platform).map(function (p) {
            return p + " " + answer.by_platform[p].toLocaleString();
          });
          size.textContent = answer.count.toLocaleString() + " devices" + (parts.length ? " (" + parts.join(", ") + ")" : "");
        } else {
          size.textContent = "—";
        }
      }).catch(function () {});
      postForm(form.getAttribute("data-preview-url"), form).then(function (answer) {
        if (mine !== sequence) return;
        if (!answer.ok) {
          var messages = [];
          Object.keys(answer.errors).forEach(function (field) {
            if (besideInput(field)) return;  // shown beside its input instead
            answer.errors[field].forEach(function (m) { messages.push((field ? field.replace("waves.", "wave row ") + ": " : "") + m); });
          });
          setList(problems, messages);
          placeErrors(answer.errors);
          if (scheduleBox) scheduleBox.hidden = true;
          verdict.classList.remove("flagged", "refused", "clear");
          verdict.textContent = "The guard will judge the campaign once the form is complete.";
          placeGuard({});
          return;
        }
        var preview = answer.preview;
        setList(problems, []);
        placeErrors(answer.errors || {});
        if (Object.keys(answer.errors || {}).length) {
          if (scheduleBox) scheduleBox.hidden = true;  // it would show timing that cannot be created
        } else {
          showSchedule(preview);
        }
        showVerdict(preview.guard, preview.guard_rest, Object.keys(preview.guard_beside).length > 0);
        placeGuard(preview.guard_beside);
        showWaves(preview);
        var sizes = Object.keys(preview.payload_bytes).map(function (p) {
          return p + " " + preview.payload_bytes[p] + " bytes";
        });
        bytes.textContent = sizes.join(", ") + " (limit 4096)";
      }).catch(function () {});
    }

    var timer = null;
    function schedule() {
      showPreview();
      if (timer) clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    }
    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
    showPreview();
    refresh();
  }

  // ------------------------------------------------------------ campaign page
  function wireLive(live) {
    var url = live.getAttribute("data-live-url");
    var rate = document.getElementById("send-rate");
    var last = null;

    function measure() {
      var body = document.getElementById("live-body");
      if (!body) return null;
      return { sent: Number(body.getAttribute("data-sent")), at: Date.now(), terminal: body.getAttribute("data-terminal") === "true" };
    }

    // The action forms stay outside the refreshed part (a reason being typed survives);
    // only the ones the campaign's state allows now are shown.
    function showActions() {
      var body = document.getElementById("live-body");
      if (!body) return;
      var allowed = (body.getAttribute("data-available") || "").split(" ").filter(Boolean);
      document.querySelectorAll("form[data-action]").forEach(function (form) {
        form.hidden = allowed.indexOf(form.getAttribute("data-action")) < 0;
      });
      var none = document.getElementById("no-actions");
      if (none) {
        none.hidden = allowed.length > 0;
        none.querySelector("[data-status-text]").textContent = body.getAttribute("data-status");
      }
    }

    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (response) {
        if (response.redirected || response.status === 401) { signInAgain(); return null; }
        if (!response.ok) return null;
        return response.text();
      }).then(function (html) {
        if (html === null || html === undefined) { setTimeout(tick, 3000); return; }
        live.innerHTML = html;
        showActions();
        var now = measure();
        if (now && last && now.at > last.at) {
          var perSecond = Math.max(0, (now.sent - last.sent) * 1000 / (now.at - last.at));
          rate.textContent = now.terminal ? "0 / s" : perSecond.toFixed(1) + " / s";
        }
        last = now;
        if (!now || !now.terminal) setTimeout(tick, 1000);
      }).catch(function () { setTimeout(tick, 3000); });
    }
    last = measure();
    if (last && last.terminal) { rate.textContent = "0 / s"; return; }
    setTimeout(tick, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("campaign-form");
    if (form) wireCampaignForm(form);
    var edit = document.getElementById("campaign-edit");
    if (edit) { wireRows(edit); wireChecks(edit); }
    var live = document.getElementById("live");
    if (live) wireLive(live);
  });
})();
