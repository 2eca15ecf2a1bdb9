// Reload the page every data-seconds while it shows something running, except
// while the person is typing into a form (a reload would lose what they typed).
(function () {
  var script = document.currentScript;
  var seconds = Number(script.getAttribute("data-seconds")) || 2;
  setInterval(function () {
    var active = document.activeElement;
    var typing = active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA") && active.value;
    if (!typing) { window.location.reload(); }
  }, seconds * 1000);
})();
