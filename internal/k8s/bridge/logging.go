package bridge

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// routeLibraryLogs points client-go's klog, controller-runtime's logr and
// virtual-kubelet's logger at log, so that everything the bridge runs
// logs through slog. klog's own flags are left alone.
func routeLibraryLogs(log *slog.Logger) {
	klog.SetSlogLogger(log.With("lib", "client-go"))
	ctrllog.SetLogger(logr.FromSlogHandler(log.With("lib", "controller-runtime").Handler()))
	vklog.L = vkLogger{log.With("lib", "virtual-kubelet")}
}

// vkLogger adapts slog to virtual-kubelet's Logger interface; the library
// ships adapters for logrus and klog only.
type vkLogger struct{ l *slog.Logger }

func (v vkLogger) Debug(a ...any)            { v.l.Debug(fmt.Sprint(a...)) }
func (v vkLogger) Debugf(f string, a ...any) { v.l.Debug(fmt.Sprintf(f, a...)) }
func (v vkLogger) Info(a ...any)             { v.l.Info(fmt.Sprint(a...)) }
func (v vkLogger) Infof(f string, a ...any)  { v.l.Info(fmt.Sprintf(f, a...)) }
func (v vkLogger) Warn(a ...any)             { v.l.Warn(fmt.Sprint(a...)) }
func (v vkLogger) Warnf(f string, a ...any)  { v.l.Warn(fmt.Sprintf(f, a...)) }
func (v vkLogger) Error(a ...any)            { v.l.Error(fmt.Sprint(a...)) }
func (v vkLogger) Errorf(f string, a ...any) { v.l.Error(fmt.Sprintf(f, a...)) }
func (v vkLogger) Fatal(a ...any)            { v.l.Error(fmt.Sprint(a...)); os.Exit(1) }
func (v vkLogger) Fatalf(f string, a ...any) { v.l.Error(fmt.Sprintf(f, a...)); os.Exit(1) }
func (v vkLogger) WithField(k string, val any) vklog.Logger {
	return vkLogger{v.l.With(k, val)}
}
func (v vkLogger) WithFields(fs vklog.Fields) vklog.Logger {
	l := v.l
	for k, val := range fs {
		l = l.With(k, val)
	}
	return vkLogger{l}
}
func (v vkLogger) WithError(err error) vklog.Logger { return vkLogger{v.l.With("err", err)} }
