// Photos to PACS: the phone page. Plain script, no build step. It collects the form and the photos,
// posts them to /api/studies with upload progress, and shows the answer in words.
(() => {
  "use strict";
  const config = JSON.parse(document.getElementById("photo-config").textContent);
  const $ = (id) => document.getElementById(id);
  const form = $("photo-form"), send = $("send"), message = $("message"), progress = $("progress");
  const thumbnails = $("thumbnails"), examDateTime = $("examDateTime");
  const MB = 1024 * 1024;
  // The three failures a sender needs to tell apart, in the words of the original phone app.
  const FAILURES = {
    VALIDATION_ERROR: "Fields missing or invalid 欄位未填完整或格式錯誤",
    PACS_TIMEOUT: "PACS connection timed out PACS 連線逾時",
    PACS_REJECTED: "PACS refused the connection or the transfer PACS 拒絕連線或傳輸失敗",
  };
  let photos = []; // {file, url, tooBig}
  let sending = false;

  // --- theme -------------------------------------------------------------------------------------
  const root = document.documentElement;
  const savedTheme = localStorage.getItem("photos-theme");
  if (savedTheme) root.dataset.theme = savedTheme;
  $("theme-toggle").addEventListener("click", () => {
    root.dataset.theme = root.dataset.theme === "dark" ? "light" : "dark";
    localStorage.setItem("photos-theme", root.dataset.theme);
  });

  // --- destination picker: only when there is a choice ------------------------------------------
  if (config.servers.length > 1) {
    const select = $("server");
    for (const server of config.servers) {
      const option = new Option(server.description ? `${server.name} — ${server.description}` : server.name, server.name);
      option.selected = server.name === config.destination;
      select.add(option);
    }
    $("server-field").hidden = false;
  }

  // --- exam time: now, or set by hand ------------------------------------------------------------
  form.querySelectorAll("input[name=examMode]").forEach((radio) => radio.addEventListener("change", () => {
    const manual = form.examMode.value === "manual";
    examDateTime.disabled = !manual;
    if (manual && !examDateTime.value) {
      const now = new Date();
      now.setMinutes(now.getMinutes() - now.getTimezoneOffset());
      examDateTime.value = now.toISOString().slice(0, 16);
    }
    update();
  }));

  // --- photos ------------------------------------------------------------------------------------
  function addFiles(fileList) {
    for (const file of fileList) {
      if (photos.length >= config.maxPhotos) break;
      photos.push({file, url: URL.createObjectURL(file), tooBig: file.size > config.maxUploadMb * MB});
    }
    render();
  }

  function render() {
    thumbnails.replaceChildren(...photos.map((photo, index) => {
      const li = document.createElement("li");
      li.className = photo.tooBig ? "too-big" : "";
      const img = document.createElement("img");
      img.src = photo.url;
      img.alt = photo.file.name;
      img.onerror = () => { img.replaceWith(Object.assign(document.createElement("span"), {className: "no-preview", textContent: photo.file.name})); };
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove photo ${index + 1} (${photo.file.name})`);
      remove.addEventListener("click", () => {
        URL.revokeObjectURL(photo.url);
        photos.splice(index, 1);
        render();
      });
      li.append(img, remove);
      if (photo.tooBig) li.append(Object.assign(document.createElement("small"), {textContent: `over ${config.maxUploadMb} MB`}));
      return li;
    }));
    update();
  }

  for (const input of [$("camera"), $("gallery")]) {
    input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
  }

  // --- the one button ----------------------------------------------------------------------------
  function problems() {
    const found = [];
    if (!$("patientId").value.trim()) found.push("Patient ID is required 患者ID必填");
    if (!photos.length) found.push("Add at least one photo 請選擇影像");
    if (photos.some((p) => p.tooBig)) found.push(`Photos may be at most ${config.maxUploadMb} MB`);
    if (!examDateTime.disabled && !examDateTime.value) found.push("Set the exam date and time");
    return found;
  }

  function update() {
    send.disabled = sending || problems().length > 0;
  }
  form.addEventListener("input", update);

  function say(text, kind) {
    message.textContent = text;
    message.className = kind || "";
  }

  function clearForm() {
    form.reset();
    examDateTime.disabled = true;
    photos.forEach((p) => URL.revokeObjectURL(p.url));
    photos = [];
    render();
    $("server").value = config.destination;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (send.disabled) return;
    const data = new FormData();
    for (const name of ["patientId", "patientName", "birthDate", "sex", "examDescription"]) data.append(name, form[name].value.trim());
    if (!examDateTime.disabled) data.append("examDateTime", examDateTime.value);
    if (config.servers.length > 1) data.append("server", $("server").value);
    photos.forEach((p) => data.append("images[]", p.file, p.file.name));

    const request = new XMLHttpRequest();
    request.open("POST", config.studiesUrl);
    request.setRequestHeader("X-CSRFToken", document.querySelector("meta[name=csrf-token]").content);
    request.setRequestHeader("Accept", "application/json");
    request.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        progress.value = Math.round((e.loaded / e.total) * 100);
        say(progress.value < 100 ? `Uploading… ${progress.value}%` : "Converting and sending to the PACS…", "busy");
      }
    };
    request.onload = () => {
      let body = {};
      try { body = JSON.parse(request.responseText); } catch (e) { /* not JSON: handled below */ }
      finish();
      if (request.status === 200 && body.status === "success") {
        const count = body.instances.length;
        clearForm();
        say(`Sent: ${count} photo${count === 1 ? "" : "s"} stored on ${body.pacs.server || "the PACS"}. 送出成功`, "success");
      } else if (request.status === 401) {
        say("Your session has ended: sign in again. 請重新登入", "error");
      } else if (request.status === 403) {
        say(body.message || "You may not send photos. Ask an administrator.", "error");
      } else {
        const stored = (body.instances || []).filter((i) => i.status === "success").length;
        const what = FAILURES[body.code] || `Error ${request.status}`;
        say(`${what}: ${body.message || request.statusText}` + (stored ? ` (${stored} photo(s) were stored)` : ""), "error");
      }
    };
    request.onerror = () => { finish(); say("No network: the photos were not sent. 網路連線失敗", "error"); };
    sending = true;
    update();
    progress.hidden = false;
    progress.value = 0;
    say("Uploading…", "busy");
    request.send(data);
  });

  function finish() {
    sending = false;
    progress.hidden = true;
    update();
  }

  if ("serviceWorker" in navigator && config.serviceWorker) {
    navigator.serviceWorker.register(config.serviceWorker).catch(() => { /* the page works without it */ });
  }
  update();
})();
