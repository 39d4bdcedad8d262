package dev.doppel.jetbrains.plugin

import com.intellij.execution.Executor
import com.intellij.execution.RunConfigurationExtension
import com.intellij.execution.configurations.GeneralCommandLine
import com.intellij.execution.configurations.JavaParameters
import com.intellij.execution.configurations.RunConfigurationBase
import com.intellij.execution.configurations.RunnerSettings
import com.intellij.execution.executors.DefaultDebugExecutor
import com.intellij.execution.runners.ExecutionEnvironment
import com.intellij.javascript.nodejs.execution.AbstractNodeTargetRunProfile
import com.intellij.javascript.nodejs.execution.NodeTargetRun
import com.intellij.javascript.nodejs.execution.runConfiguration.AbstractNodeRunConfigurationExtension
import com.intellij.javascript.nodejs.execution.runConfiguration.NodeRunConfigurationLaunchSession
import com.intellij.notification.NotificationType
import com.intellij.openapi.options.SettingsEditor
import com.goide.execution.GoRunConfigurationBase
import com.goide.execution.GoRunningState
import com.goide.execution.extension.GoRunConfigurationExtension
import com.intellij.execution.target.TargetedCommandLineBuilder
import com.jetbrains.python.run.AbstractPythonRunConfiguration
import com.jetbrains.python.run.PythonRunConfigurationExtension
import dev.doppel.jetbrains.core.CommandLines
import dev.doppel.jetbrains.core.LaunchType
import dev.doppel.jetbrains.core.RunSpec

// The run-configuration extensions: each reads its run configuration into a core RunSpec,
// has the core resolve it (doppel/resolveLaunch), and sets the env the core returns. Each lives
// in the optional plugin.xml part of its language plugin (doppel-java.xml, doppel-go.xml, …), so
// the plugin loads in any IDE. NOT COMPILED HERE (no IntelliJ Platform SDK on this machine):
// signatures follow the 2024.3 platform and may need adjusting when first built with Gradle.

private fun RunConfigurationBase<*>.doppel() = DoppelService.of(project)


/** Java, Kotlin, Spring Boot, JUnit…: everything built on JavaParameters. */
class DoppelJavaRunConfigurationExtension : RunConfigurationExtension() {
    override fun isApplicableFor(configuration: RunConfigurationBase<*>): Boolean = true

    override fun isEnabledFor(applicableConfiguration: RunConfigurationBase<*>, runnerSettings: RunnerSettings?): Boolean =
        applicableConfiguration.doppel().enabled

    override fun <T : RunConfigurationBase<*>> updateJavaParameters(configuration: T, params: JavaParameters, runnerSettings: RunnerSettings?) {
        updateJavaParameters(configuration, params, runnerSettings, null)
    }

    override fun <T : RunConfigurationBase<*>> updateJavaParameters(
        configuration: T, params: JavaParameters, runnerSettings: RunnerSettings?, executor: Executor?,
    ) {
        val service = configuration.doppel()
        if (!service.enabled) return
        val spec = RunSpec(
            type = LaunchType.JAVA,
            name = configuration.name,
            program = params.mainClass,
            args = params.programParametersList.list,
            runtimeArgs = params.vmParametersList.list,
            cwd = params.workingDirectory,
            env = params.env,
            debug = executor?.id == DefaultDebugExecutor.EXECUTOR_ID,
        )
        val patched = service.patch(spec)
        params.env = patched.env
        service.bind(configuration, patched.sessionId)
    }

}

/** Python (PyCharm, and IntelliJ IDEA with the Python plugin). */
class DoppelPythonRunConfigurationExtension : PythonRunConfigurationExtension() {
    override fun isApplicableFor(configuration: AbstractPythonRunConfiguration<*>): Boolean = true

    override fun isEnabledFor(applicableConfiguration: AbstractPythonRunConfiguration<*>, runnerSettings: RunnerSettings?): Boolean =
        DoppelService.of(applicableConfiguration.project).enabled

    override fun patchCommandLine(
        configuration: AbstractPythonRunConfiguration<*>, runnerSettings: RunnerSettings?, cmdLine: GeneralCommandLine, runnerId: String,
    ) {
        val service = DoppelService.of(configuration.project)
        val params = cmdLine.parametersList.list
        val spec = RunSpec(
            type = LaunchType.PYTHON,
            name = configuration.name,
            program = CommandLines.pythonScript(params),
            args = params,
            cwd = cmdLine.workDirectory?.path,
            env = cmdLine.environment,
            debug = runnerId == DefaultDebugExecutor.EXECUTOR_ID || CommandLines.pydevdPort(params) != null,
        )
        val patched = service.patch(spec)
        cmdLine.environment.putAll(patched.env)
        service.bind(configuration, patched.sessionId)
    }

}

/** Node.js (WebStorm, IntelliJ IDEA Ultimate). */
class DoppelNodeRunConfigurationExtension : AbstractNodeRunConfigurationExtension() {
    override fun isApplicableFor(profile: AbstractNodeTargetRunProfile): Boolean = true

    override fun isEnabledFor(applicableConfiguration: AbstractNodeTargetRunProfile, runnerSettings: RunnerSettings?): Boolean =
        DoppelService.of(applicableConfiguration.project).enabled

    override fun <P : AbstractNodeTargetRunProfile> createEditor(configuration: P): SettingsEditor<P>? = null
    override fun getEditorTitle(): String? = null

    override fun createLaunchSession(configuration: AbstractNodeTargetRunProfile, environment: ExecutionEnvironment): NodeRunConfigurationLaunchSession? {
        val service = DoppelService.of(configuration.project)
        if (!service.enabled) return null
        return object : NodeRunConfigurationLaunchSession() {
            override fun addNodeOptionsTo(targetRun: NodeTargetRun) {
                val builder = targetRun.commandLineBuilder
                val params = builder.parameters.map { it.toString() }
                val spec = RunSpec(
                    type = LaunchType.NODE,
                    name = configuration.name,
                    program = params.firstOrNull { !it.startsWith("-") },
                    runtimeArgs = params.takeWhile { it.startsWith("-") },
                    args = params.dropWhile { it.startsWith("-") }.drop(1),
                    cwd = builder.workingDirectory?.toString(),
                    env = builder.environmentVariables.mapValues { it.value.toString() },
                    debug = environment.executor.id == DefaultDebugExecutor.EXECUTOR_ID,
                )
                val patched = service.patch(spec)
                for ((k, v) in patched.added) builder.addEnvironmentVariable(k, v)
                service.bind(configuration, patched.sessionId)
            }
        }
    }
}

/**
 * Go (GoLand, IntelliJ IDEA Ultimate with the Go plugin). Go programs are often statically
 * linked (LD_PRELOAD can't reach them), and GoLand's debugger runs its own Delve: so the command
 * line GoLand builds — the program, or Delve with the program — is put behind the session's
 * wrapper (`doppel wrap --`, protocol `wrap: true`), which runs it inside the session under the
 * seccomp launcher. Delve passes through by process identity; its debuggee is intercepted.
 */
class DoppelGoRunConfigurationExtension : GoRunConfigurationExtension() {
    override fun isApplicableFor(configuration: GoRunConfigurationBase<*>): Boolean = true

    override fun isEnabledFor(applicableConfiguration: GoRunConfigurationBase<*>, runnerSettings: RunnerSettings?): Boolean =
        DoppelService.of(applicableConfiguration.project).enabled

    override fun patchCommandLine(
        configuration: GoRunConfigurationBase<*>, runnerSettings: RunnerSettings?, cmdLine: TargetedCommandLineBuilder,
        runnerId: String, state: GoRunningState<out GoRunConfigurationBase<*>>, commandLineType: GoRunningState.CommandLineType,
    ) {
        if (commandLineType != GoRunningState.CommandLineType.RUN) return
        val service = DoppelService.of(configuration.project)
        val spec = RunSpec(
            type = LaunchType.GO,
            name = configuration.name,
            program = configuration.workingDirectory,
            cwd = configuration.workingDirectory,
            env = configuration.customEnvironment,
            debug = runnerId == DefaultDebugExecutor.EXECUTOR_ID,
        )
        val patched = service.patch(spec)
        for ((k, v) in patched.added) cmdLine.addEnvironmentVariable(k, v)
        // exe args… becomes wrapper[0] wrapper[1..] exe args…
        val exe = cmdLine.exePath
        cmdLine.setExePath(patched.wrapper.first())
        val prefix = patched.wrapper.drop(1)
        cmdLine.addParameterAt(0, exe)
        for (arg in prefix.asReversed()) cmdLine.addParameterAt(0, arg)
        service.bind(configuration, patched.sessionId)
    }
}
